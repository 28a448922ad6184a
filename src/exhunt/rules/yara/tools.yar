/*
 * exhunt file-tree rules: tools, dumps and archives left behind after Exchange exploitation.
 * Written for exhunt from the facts in its detection reference (§3.1, §3.2, §3.5, §1.8).
 * Externals: place, filename (see webshells.yar).
 */

rule exhunt_tool_powercat_1
{
    meta:
        id = "TOOL-POWERCAT-1"
        title = "PowerCat (PowerShell netcat) script or invocation"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1059.001"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
    strings:
        $function = /function\s+powercat\b/ nocase
        $command_var = "$CommandToExecute" nocase
        $listen = /powercat\s+-l\s+-p\s+\d+/ nocase
        $dns_relay = / -r dns:/ nocase
        $download_run = /powercat\.ps1['"]\s*\)\s*;\s*powercat\s+-c/ nocase
    condition:
        filesize < 4MB and ($download_run or ($function and ($command_var or $listen)) or ($listen and $dns_relay))
}

rule exhunt_tool_nishang_1
{
    meta:
        id = "TOOL-NISHANG-1"
        title = "Nishang-style PowerShell reverse shell over a TCP client"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1059.001"
        reference = "https://github.com/microsoft/Microsoft-365-Defender-Hunting-Queries/blob/master/Execution/reverse-shell-nishang.md"
    strings:
        $tcp_client = /New-Object\s+(System\.)?Net\.Sockets\.TCPClient\s*\(/ nocase
        $stream_buffer = /\.GetStream\s*\(\s*\)\s*;\s*\[byte\[\]\]\s*\$/ nocase
        $encode_iex = /\(\s*\[text\.encoding\]::ASCII\s*\)\.GetBytes\s*\(\s*\(\s*iex\s+\$/ nocase
        $invoke = /\b(iex|Invoke-Expression)\b/ nocase
        $write = ".Write(" nocase
    condition:
        filesize < 1MB and $tcp_client and ($stream_buffer or $encode_iex or ($invoke and $write))
}

rule exhunt_tool_lsass_1
{
    meta:
        id = "TOOL-LSASS-1"
        title = "Minidump of the LSASS process (credential theft)"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1003.001"
        reference = "https://github.com/microsoft/CSS-Exchange/blob/main/Security/src/Test-ProxyLogon.ps1"
    strings:
        $module_lsass = "\\lsass.exe" wide nocase
        $module_lsasrv = "lsasrv.dll" wide nocase
    condition:
        uint32(0) == 0x504d444d and (filename matches /lsass/i or all of them)
}

rule exhunt_tool_lsass_2
{
    meta:
        id = "TOOL-LSASS-2"
        title = "File named like an LSASS dump in a staging folder"
        stage = "post"
        level = "medium"
        cves = ""
        attack = "T1003.001"
        reference = "https://github.com/microsoft/CSS-Exchange/blob/main/Security/src/Test-ProxyLogon.ps1"
    condition:
        place == "staging" and filename matches /lsass.*dmp/i and uint32(0) != 0x504d444d
}

rule exhunt_arch_staging_1
{
    meta:
        id = "ARCH-STAGING-1"
        title = "Archive in a staging folder (ProgramData, Windows\\Temp, C:\\root, PerfLogs, Users\\Public)"
        stage = "post"
        level = "low"
        cves = ""
        attack = "T1560.001"
        reference = "https://github.com/microsoft/CSS-Exchange/issues/311"
        after_exploitation = "true"
    strings:
        $zip = { 50 4B 03 04 }
        $seven_zip = { 37 7A BC AF 27 1C }
        $rar = { 52 61 72 21 1A 07 }
        $cab = { 4D 53 43 46 00 00 00 00 }
    condition:
        place == "staging" and
        (
            filename matches /\.(zip|7z|rar)$/i or $seven_zip at 0 or $rar at 0 or
            ($zip at 0 and filename matches /\.(dmp|gif|jpe?g|png|txt|log|tmp|dat|aspx?|bin)$/i) or
            ($cab at 0 and not filename matches /\.(cab|msu|msi)$/i)
        )
}

rule exhunt_arch_web_1
{
    meta:
        id = "ARCH-WEB-1"
        title = "Archive inside a web folder (IIS root or Exchange virtual directory): staged for download"
        stage = "post"
        level = "medium"
        cves = ""
        attack = "T1560.001"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/apt_hafnium.yar"
    strings:
        $zip = { 50 4B 03 04 }
        $seven_zip = { 37 7A BC AF 27 1C }
        $rar = { 52 61 72 21 1A 07 }
        $cab = { 4D 53 43 46 00 00 00 00 }
    condition:
        (place == "iis-web" or place == "exchange-web") and
        ($seven_zip at 0 or $rar at 0 or $cab at 0 or
         ($zip at 0 and not filename matches /\.(xlsx|docx|pptx|xap|jar|nupkg|vsix|odt|ods|epub)$/i))
}

rule exhunt_arch_recon_1
{
    meta:
        id = "ARCH-RECON-1"
        title = "Cabinet file holding reconnaissance output (ip.txt, arp.txt) or registry hives"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1560.001"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/apt_hafnium.yar"
    strings:
        $ip = "ip.txt" nocase
        $arp = "arp.txt" nocase
        $system = "system" nocase
        $security = "security" nocase
    condition:
        uint32(0) == 0x4643534d and filesize < 10MB and $ip and $arp and ($system or $security)
}

rule exhunt_msert_1
{
    meta:
        id = "MSERT-1"
        title = "Microsoft Safety Scanner log reports a detected threat"
        stage = "post"
        level = "medium"
        cves = ""
        attack = ""
        reference = "https://github.com/microsoft/CSS-Exchange/blob/main/Security/src/EOMT.ps1"
    strings:
        $detected = "Threat Detected" ascii wide nocase
    condition:
        place == "msert-log" and $detected
}

rule exhunt_msert_2
{
    meta:
        id = "MSERT-2"
        title = "Microsoft Safety Scanner log names an Exchange web-shell or exploitation detection"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1505.003"
        reference = "https://github.com/microsoft/CSS-Exchange/blob/main/Security/Defender-MSERT-Guidance.md"
    strings:
        $exmann = "Exmann" ascii wide nocase
        $chopper = "Chopper!dha" ascii wide nocase
        $secchecker = "SecChecker" ascii wide nocase
        $js_webshell = "Backdoor:JS/Webshell" ascii wide nocase
        $dump_lsass = "DumpLsass" ascii wide nocase
        $twoface = "TwoFaceVar" ascii wide nocase
        $spawn_cmd = "IISExchgSpawnCMD" ascii wide nocase
        $susp_session = "SuspExchgSession" ascii wide nocase
        $cve_31207 = "CVE-2021-31207" ascii wide nocase
    condition:
        place == "msert-log" and any of them
}

/*
 * exhunt file-tree rules: shells hidden in files Exchange itself was made to write
 * (OAB virtual-directory configuration dumps, mailbox exports to PST, certificate requests).
 * Written for exhunt from the string facts in its detection reference (§3.5, §2.2 PS-FILE-2/3).
 * Externals: place, filename (see webshells.yar).
 */

rule exhunt_ws_oabconf_1
{
    meta:
        id = "WS-OABCONF-1"
        title = "OAB virtual-directory configuration dump carrying script in a URL (CVE-2021-27065 shell)"
        stage = "post"
        level = "critical"
        cves = "CVE-2021-26855,CVE-2021-27065"
        attack = "T1505.003"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
    strings:
        $url_property = /(External|Internal)Url\s*:/ nocase
        $prop_auth = "InternalAuthenticationMethods" nocase
        $prop_epa = "ExtendedProtectionTokenChecking" nocase
        $prop_oabs = "OfflineAddressBooks" nocase
        $script_block = /<script[^>]{0,100}runat\s*=\s*["']?server/ nocase
        $script_page = /<%@?\s*Page\s+Language/ nocase
        $script_in_url = /Url\s*:\s*https?:\/\/[^\s\/]{1,3}\/\s*<script/ nocase
    condition:
        filesize < 256KB and $url_property and 2 of ($prop_*) and any of ($script_*)
}

rule exhunt_ws_pst_1
{
    meta:
        id = "WS-PST-1"
        title = "Mailbox export (PST, !BDN header) carrying a server page: ProxyShell web shell"
        stage = "post"
        level = "critical"
        cves = "CVE-2021-34473,CVE-2021-34523,CVE-2021-31207"
        attack = "T1505.003"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/expl_proxyshell.yar"
    strings:
        $page_language = /Page\s+Language\s*=/ nocase
        $b64_request = ".FromBase64String(Request[" nocase
        $key_gold = "gold8899"
        $key_exec = "exec_code"
        $key_orange = "orangenb"
        $trait_page = "<%@ Page" nocase
        $trait_item = "Request.Item[" nocase
        $trait_unsafe = "\"unsafe\");" nocase
        $trait_eval = "<%eval(" nocase
        $trait_script = "script language=" nocase
        $trait_request = "Request[" nocase
    condition:
        uint32(0) == 0x4e444221 and
        (
            (filesize < 2MB and $page_language) or
            $b64_request or
            (filesize < 512KB and (any of ($key_*) or 3 of ($trait_*)))
        )
}

rule exhunt_ws_der_1
{
    meta:
        id = "WS-DER-1"
        title = "DER certificate request carrying a server page: ProxyShell New-ExchangeCertificate shell"
        stage = "post"
        level = "critical"
        cves = "CVE-2021-34473,CVE-2021-34523,CVE-2021-31207"
        attack = "T1505.003"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/expl_proxyshell.yar"
    strings:
        $page_language = /Page\s+Language\s*=/ nocase
    condition:
        uint16be(0) == 0x3082 and filesize < 10KB and $page_language
}

rule exhunt_ws_oddheader_1
{
    meta:
        id = "WS-ODDHEADER-1"
        title = "Server page whose first bytes are binary: written by something other than an editor (dropper artefact)"
        stage = "post"
        level = "medium"
        cves = "CVE-2021-34473,CVE-2021-34523,CVE-2021-31207"
        attack = "T1505.003"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/expl_proxyshell.yar"
    strings:
        $page_language = /Page\s+Language\s*=/ nocase
        $java = /Page\s+Language\s*=\s*["']?java["'\s]/ nocase
    condition:
        filesize < 500KB and $page_language and not $java and
        filename matches /\.(aspx|ashx|asmx|asp)$/i and
        not (
            uint32(0) == 0x4e444221 or uint16be(0) == 0x3082 or uint16(0) == 0x5a4d or
            uint32(0) == 0x04034b50 or uint32(0) == 0x21726152 or uint16(0) == 0x8b1f or
            uint32(0) == 0xe011cfd0 or uint32(0) == 0x4643534d or uint32(0) == 0xa1b2c3d4 or
            uint32(0) == 0xd4c3b2a1 or uint16(0) == 0xfeff or uint16(0) == 0xfffe or
            (uint16(0) == 0xbbef and uint8(2) == 0xbf)
        ) and
        for any i in (0..7) : (
            (uint8(i) < 0x20 and uint8(i) != 0x09 and uint8(i) != 0x0a and uint8(i) != 0x0d) or uint8(i) > 0x7e
        )
}

/*
 * exhunt file-tree rules: web shells dropped on Exchange servers (ProxyLogon, ProxyShell, ProxyNotShell).
 *
 * Written for exhunt from the string facts collected in its detection reference (§3.5, §2.2 PS-FILE-5);
 * not derived from any other rule set's code. Every rule's meta carries id, title, stage, level
 * (Sigma levels), cves (comma list) and reference. exhunt defines two external strings per file:
 * `place` (exchange-web, iis-web, aspnet-temp, staging, iis-config, msert-log, ioc-path) and `filename`.
 * The rules compile with both YARA-X and YARA 4 (define the externals: yara -d place= -d filename=).
 */

rule exhunt_ws_chopper_1
{
    meta:
        id = "WS-CHOPPER-1"
        title = "China Chopper style server page evaluating a request parameter with the unsafe flag"
        stage = "post"
        level = "critical"
        cves = ""
        attack = "T1505.003"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
    strings:
        $eval_request = /eval\s*\(\s*Request\s*(\.(Item|Form|QueryString))?\s*[\[(]/ nocase
        $unsafe_arg = /,\s*["']unsafe["']\s*\)/ nocase
        $item_then_unsafe = /Request\.Item\s*\[[^\]\r\n]{1,80}\]\s*\)*\s*,\s*["']unsafe["']/ nocase
        $obfuscated_eval = /;\s*eval\s*\(\s*Request\s*\[\s*_0x/ nocase
        $obfuscated_table = "','unsafe','" nocase
    condition:
        filesize < 4MB and
        (($eval_request and $unsafe_arg) or $item_then_unsafe or $obfuscated_eval or $obfuscated_table)
}

rule exhunt_ws_chopper_2
{
    meta:
        id = "WS-CHOPPER-2"
        title = "Small JScript server page that evaluates request data"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1505.003"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
    strings:
        $jscript_page = /<%@\s*Page\s+Language\s*=\s*["']?JScript/ nocase
        $jscript_block = /<script\s+language\s*=\s*["']?JScript["']?\s+runat\s*=\s*["']?server/ nocase
        $eval = /\beval\s*\(/ nocase
        $request_form = /Request\.(Form|Item|QueryString)\s*[\[(]/ nocase
        $request_index = /Request\s*\[/ nocase
        $from_base64 = ".FromBase64String(" nocase
    condition:
        filesize < 16KB and not exhunt_ws_chopper_1 and any of ($jscript_*) and $eval and
        ($request_form or $request_index or $from_base64)
}

rule exhunt_ws_writer_1
{
    meta:
        id = "WS-WRITER-1"
        title = "Server page writing request-supplied content to a request-supplied file (dropper shell)"
        stage = "post"
        level = "critical"
        cves = ""
        attack = "T1505.003"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/apt_hafnium.yar"
    strings:
        $writer_from_form = /StreamWriter\s*\(\s*Request\.(Form|Item|QueryString)\s*\[/ nocase
        $write_from_form = /\.Write\s*\(\s*Request\.(Form|Item|QueryString)\s*\[/ nocase
        $server_code = /(<%|runat\s*=\s*["']?server)/ nocase
    condition:
        filesize < 1MB and $writer_from_form and $write_from_form and $server_code
}

rule exhunt_ws_upload_1
{
    meta:
        id = "WS-UPLOAD-1"
        title = "Minimal upload shell saving the first posted file to a chosen path"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1505.003"
        reference = "https://www.volexity.com/blog/2021/03/02/active-exploitation-of-microsoft-exchange-zero-day-vulnerabilities/"
    strings:
        $first_file = /Request\.Files\s*\[\s*0\s*\]/ nocase
        $save_as = /\.SaveAs\s*\(\s*(Server\.MapPath|Path\.Combine)\s*\(/ nocase
        $server_code = /(<%|runat\s*=\s*["']?server)/ nocase
    condition:
        filesize < 8KB and all of them
}

rule exhunt_ws_jscript_ps_1
{
    meta:
        id = "WS-JSCRIPT-PS-1"
        title = "ProxyShell-era JScript shell or loader (AppcacheVer / getErrorWord family)"
        stage = "post"
        level = "critical"
        cves = "CVE-2021-34473,CVE-2021-34523,CVE-2021-31207"
        attack = "T1505.003"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/expl_proxyshell.yar"
    strings:
        $marker_appcache = "AppcacheVer"
        $marker_key = "LaTkWfI64XeDAXZS6pU1KrsvLAcGH7AZOQXjrFkT816RnFYJQR"
        $loader = ");eval/*asf"
        $trait_lang = "language=\"JScript\"" nocase
        $trait_get_error = "function getErrorWord" nocase
        $trait_error_word = "errorWord"
        $trait_redirect = "Response.Redirect"
        $trait_page_load = "function Page_Load" nocase
        $trait_runat = "runat=\"server\"" nocase
        $trait_request = "Request["
        $trait_eval_comment = "eval/*"
    condition:
        $loader or
        (filesize < 1KB and
         (any of ($marker_*) or
          (4 of ($trait_*) and any of ($trait_get_error, $trait_error_word, $trait_redirect, $trait_eval_comment))))
}

rule exhunt_ws_drophell_1
{
    meta:
        id = "WS-DROPHELL-1"
        title = "XSLT-transform shell loading base64 XML from the request (DropHell)"
        stage = "post"
        level = "critical"
        cves = "CVE-2021-34473,CVE-2021-34523,CVE-2021-31207"
        attack = "T1505.003"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/expl_proxyshell.yar"
    strings:
        $load_xml = /\.LoadXml\s*\(\s*System\.Text\.Encoding\.UTF8\.GetString\s*\(\s*System\.Convert\.FromBase64String\s*\(\s*Request\s*\[/ nocase
        $memory_stream = "new System.IO.MemoryStream()" nocase
        $transform = "Transform(" nocase
    condition:
        filesize < 1MB and all of them
}

rule exhunt_ws_regeorg_1
{
    meta:
        id = "WS-REGEORG-1"
        title = "reGeorg-style socket tunnel page"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1090.001"
        reference = "https://github.com/sensepost/reGeorg"
    strings:
        $sockets_ns = "System.Net.Sockets"
        $new_socket = "new Socket("
        $header_get = "Request.Headers.Get"
        $b64_header = /FromBase64String\s*\(\s*StrTr\s*\(\s*Request\.Headers\.Get/
        $ip_decl = "IPAddress ip;"
        $split_pipe = ".Split('|')"
        $substring = ".Substring("
        $status_header = "X-STATUS" nocase
        $cmd_connect = "\"CONNECT\""
        $cmd_forward = "\"FORWARD\""
        $cmd_disconnect = "\"DISCONNECT\""
    condition:
        filesize < 512KB and ($sockets_ns or $new_socket) and
        (
            ($b64_header and $sockets_ns) or
            ($header_get and $ip_decl and $split_pipe and $substring and $new_socket) or
            ($status_header and 2 of ($cmd_*))
        )
}

rule exhunt_ws_sportsball_1
{
    meta:
        id = "WS-SPORTSBALL-1"
        title = "SPORTSBALL command and upload shell (cookie-keyed)"
        stage = "post"
        level = "critical"
        cves = ""
        attack = "T1505.003"
        reference = "https://www.volexity.com/blog/2021/03/02/active-exploitation-of-microsoft-exchange-zero-day-vulnerabilities/"
    strings:
        $cookie_name = "new HttpCookie(\"fqrspt\"" nocase
        $cookie_value = "ZN2aDAB4rXsszEvCLrzgcvQ4oi5J1TuiRULlQbYwldE="
        $v_result = "Result.InnerText = string.Empty;"
        $v_expires = "newcook.Expires = DateTime.Now.AddDays("
        $v_stdin = "process.StandardInput.WriteLine(HttpContext.Current.Request.Form["
        $v_upload = "<input type=\"submit\" value=\"Upload\" />"
    condition:
        filesize < 512KB and ($cookie_name or $cookie_value or 3 of ($v_*))
}

rule exhunt_ws_fileexplorer_1
{
    meta:
        id = "WS-FILEEXP-1"
        title = "File-explorer web shell (drive listing, create and delete from the page)"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1505.003"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
    strings:
        $drives = "DriveInfo.GetDrives()"
        $created = ".Text + \" Created!\";"
        $create_dir = "Directory.CreateDirectory("
        $delete = /(File|Directory)\.Delete\s*\(/
        $upload = /\.(SaveAs|PostedFile)\b/
        $server_code = /(<%|runat\s*=\s*["']?server)/ nocase
    condition:
        filesize < 1MB and $drives and $server_code and
        ($created or ($create_dir and ($delete or $upload)))
}

rule exhunt_ws_secchecker_1
{
    meta:
        id = "WS-SECCHECK-1"
        title = "Tiny page probing for EDR agents (SecChecker)"
        stage = "post"
        level = "high"
        cves = ""
        attack = "T1518.001"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
    strings:
        $fireeye = /fireeye\\{1,2}xagt\.exe/ nocase
        $crowdstrike = /\\{1,2}csfalconservice\.exe/ nocase
    condition:
        filesize < 1KB and uint16(0) == 0x253c and any of them
}

rule exhunt_ws_compiled_1
{
    meta:
        id = "WS-COMPILED-1"
        title = "ASP.NET compiled page assembly of a web shell (Temporary ASP.NET Files)"
        stage = "post"
        level = "critical"
        cves = ""
        attack = "T1505.003"
        reference = "https://github.com/Neo23x0/signature-base/blob/master/yara/apt_hafnium.yar"
    strings:
        $vpath_client = "~/aspnet_client/" ascii wide nocase
        $vpath_auth = "~/auth/" ascii wide nocase
        $jscript_eval = "JScriptEvaluate"
        $get_request = "get_Request"
        $get_files = "get_Files"
        $get_count = "get_Count"
        $get_item = "get_Item"
        $get_server = "get_Server"
    condition:
        uint16(0) == 0x5a4d and filesize < 200KB and
        filename matches /^App_Web_[a-z0-9]{6,10}\.dll$/i and
        any of ($vpath_*) and
        ($jscript_eval or all of ($get_*))
}

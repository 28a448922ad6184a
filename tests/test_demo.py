"""The demo evidence generator: determinism, layouts and the exact shape of the logs it writes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import evtx
import pytest

from exhunt.demo import HOSTS, generate
from exhunt.demo.formats import HTTPPROXY_FIELDS, IIS_FIELDS, RPS_HTTP_FIELDS

EX01 = "EXCH01/D/Exchange/Logging"
IIS01 = "EXCH01/C/inetpub/logs/LogFiles"
EXCHANGE = "Program Files/Microsoft/Exchange Server/V15"
VR05 = "EXCH05/uploads/auto/C%3A"
EVTX05 = f"{VR05}/Windows/System32/winevt/Logs"
RPS = f"{EXCHANGE}/Logging/CmdletInfra/Powershell-Proxy/Http"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate(root)
    return root


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, and of every entry of every zip."""
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for entry in archive.namelist():
                    digests[f"{name}!{entry}"] = hashlib.sha256(archive.read(entry)).hexdigest()
    return digests


def _text(path: Path) -> str:
    """The file decoded as UTF-8 (BOM dropped) with its line endings kept."""
    return path.read_bytes().decode("utf-8-sig")


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def _httpproxy_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Field names from ``#Fields:`` and the data rows, parsed with the csv module."""
    lines = _text(path).splitlines()
    fields = next(line[len("#Fields: "):] for line in lines if line.startswith("#Fields: ")).split(",")
    data = [line for line in lines if not line.startswith("#") and not line.startswith("DateTime,")]
    return fields, list(csv.reader(data))


def test_output_is_byte_identical_for_the_same_seed(tmp_path: Path, out: Path) -> None:
    again = tmp_path / "again"
    generate(again)
    assert _digests(again) == _digests(out)


def test_another_seed_changes_the_benign_traffic(tmp_path: Path, out: Path) -> None:
    other = tmp_path / "other"
    generate(other, seed=7)
    assert _digests(other) != _digests(out)


def _zip_text(path: Path, entry: str) -> str:
    with zipfile.ZipFile(path) as archive:
        return archive.read(entry).decode("utf-8-sig")


def _rps_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """Field names from ``#Fields:`` and the data rows of an Rps_Http log (bare header line skipped)."""
    lines = text.splitlines()
    fields = next(line[len("#Fields: "):] for line in lines if line.startswith("#Fields: ")).split(",")
    data = [line for line in lines if not line.startswith("#") and not line.startswith("DateTime,")]
    return fields, list(csv.reader(data))


def _events(data: bytes) -> list[dict]:
    """Every record of an EVTX file, parsed by the ``evtx`` package (as exhunt reads them)."""
    return [json.loads(record["data"]) for record in evtx.PyEvtxParser(io.BytesIO(data)).records_json()]


def test_returns_one_collection_per_host_in_order(tmp_path: Path) -> None:
    paths = generate(tmp_path)
    assert [p.name for p in paths] == ["EXCH01", "EXCH02.zip", "EXCH03.zip", "EXCH04", "EXCH05", "EXCH06.zip",
                                       "EXCH07", "EXCH08.zip"]
    assert [h.expected_stage for h in HOSTS] == ["compromised", "probed", "clean", "exploited", "compromised",
                                                 "compromised", "exploited", "probed"]
    assert all(p.exists() for p in paths)


def test_kape_layout_has_drive_folders(out: Path) -> None:
    assert sorted(p.name for p in (out / "EXCH01").iterdir()) == ["C", "D"]
    assert (out / EX01 / "HttpProxy" / "Ecp").is_dir()
    assert (out / IIS01 / "W3SVC1").is_dir() and (out / IIS01 / "W3SVC2").is_dir()


def test_velociraptor_layout(out: Path) -> None:
    names = _zip_names(out / "EXCH02.zip")
    assert {"uploads.json", "client_info.json", "log.json", "collection_context.json"} <= set(names)
    prefix = "uploads/auto/C%3A/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/"
    assert any(n.startswith(prefix) for n in names)
    assert any(n.startswith("uploads/auto/C%3A/inetpub/logs/LogFiles/W3SVC1/u_ex") for n in names)
    assert names == sorted(names)


def test_cylr_layout_uses_backslashes(out: Path) -> None:
    names = _zip_names(out / "EXCH03.zip")
    assert "CyLR.log" in names
    evidence = [n for n in names if n != "CyLR.log"]
    assert evidence and all(n.startswith("C\\") and "/" not in n for n in evidence)


def test_windows_root_layout(out: Path) -> None:
    top = {p.name for p in (out / "EXCH04").iterdir()}
    assert top == {"Program Files", "Windows", "inetpub"}


def test_httpproxy_rows_have_one_cell_per_field(out: Path) -> None:
    files = sorted((out / EX01 / "HttpProxy").rglob("*.LOG"))
    assert files
    for path in files:
        raw = path.read_bytes()
        assert raw.startswith(b"DateTime,RequestId,") and b"\r\n#Software: Microsoft Exchange Server\r\n" in raw
        fields, rows = _httpproxy_rows(path)
        assert tuple(fields) == HTTPPROXY_FIELDS
        assert rows and all(len(row) == len(fields) for row in rows), path
        assert all(row[fields.index("MajorVersion"):fields.index("RevisionVersion") + 1] == ["15", "1", "2176", "2"]
                   for row in rows)


def test_exch01_has_the_proxylogon_chain(out: Path) -> None:
    fields, rows = _httpproxy_rows(out / EX01 / "HttpProxy" / "Ecp" / "HttpProxy_2021030306-1.LOG")
    col = {name: index for index, name in enumerate(fields)}
    attack = [r for r in rows if r[col["ClientIpAddress"]] == "203.0.113.45"]
    anchors = [r[col["AnchorMailbox"]] for r in attack]
    base = "ServerInfo~a]@EXCH01.contoso.local:444"
    assert anchors[:3] == [f"{base}/autodiscover/autodiscover.xml?#", f"{base}/mapi/emsmdb/?#",
                           f"{base}/ecp/proxyLogon.ecp?#"]
    assert anchors[-1].startswith(f"{base}/ecp/DDI/DDIService.svc/SetObject?msExchEcpCanary=")
    assert anchors[-1].endswith("&schema=ResetOABVirtualDirectory#")
    assert [r[col["HttpStatus"]] for r in attack] == ["200", "200", "241", "200", "200", "200"]
    assert {r[col["UrlStem"]] for r in attack} == {"/ecp/y.js"}
    assert {r[col["RoutingHint"]] for r in attack} == {"X-BEResource-Cookie"}
    assert {r[col["AuthenticatedUser"]] for r in attack} == {""}


def test_a_quoted_comma_survives_csv_parsing(out: Path) -> None:
    fields, rows = _httpproxy_rows(out / EX01 / "HttpProxy" / "Mapi" / "HttpProxy_2021030208-1.LOG")
    request_ids = [row[fields.index("ClientRequestId")] for row in rows]
    assert any("," in value for value in request_ids)


def test_ecp_server_log_carries_the_web_shell_url(out: Path) -> None:
    text = _text(out / EX01 / "ECP" / "Server" / "ECPServer20210303-1.LOG")
    assert text.startswith("#Software: Microsoft Exchange Server\r\n#Version: 15.0.0.0\r\n#Log-type: ECP Server Log")
    assert "\r\n#Fields: TimeStamp,ServerName,EventId,EventData\r\n" in text
    assert (",EXCH01,ECP.Request,S:TIME=" in text
            and "'S:CMD=Set-OabVirtualDirectory.ExternalUrl=''http://f/<script language=\"\"JScript\"\" "
            'runat=""server"">function Page_Load(){eval(Request[""' in text)
    assert ".Path=''D:\\Exchange\\FrontEnd\\HttpProxy\\OAB''" in text


def test_oab_generator_log_names_the_web_shell(out: Path) -> None:
    text = _text(out / EX01 / "OABGeneratorLog" / "OABGeneratorLog_20210303-1.LOG")
    assert ("Download failed and temporary file "
            "'\\\\127.0.0.1\\c$\\inetpub\\wwwroot\\aspnet_client\\discover.aspx' needs to be removed.") in text


def test_iis_rows_have_fifteen_tokens(out: Path) -> None:
    files = sorted((out / IIS01).rglob("*.log")) + sorted((out / "EXCH04" / "inetpub").rglob("*.log"))
    headers = 0
    for path in files:
        lines = _text(path).split("\r\n")
        assert lines.pop() == ""
        headers += sum(line == f"#Fields: {IIS_FIELDS}" for line in lines)
        assert all(len(line.split(" ")) == 15 for line in lines if not line.startswith("#")), path
    assert headers == len(files) + 1  # one file restarts mid-way and repeats its header
    assert (out / "EXCH04/inetpub/logs/LogFiles/W3SVC1/u_ex210301.log").read_bytes().startswith(b"\xef\xbb\xbf#")


def test_iis_shows_web_shell_use_and_back_end_reset(out: Path) -> None:
    front = "".join(_text(p) for p in sorted((out / IIS01 / "W3SVC1").glob("*.log")))
    back = _text(out / IIS01 / "W3SVC2" / "u_ex210303.log")
    assert front.count(" POST /aspnet_client/discover.aspx - 443 - 203.0.113.45 ") >= 3
    assert " GET /owa/auth/RedirSuiteServerProxy.aspx &CorrelationID=<empty>;&cafeReqId=" in front
    assert " POST /ecp/y.js &CorrelationID=<empty>;&cafeReqId=" in front
    assert any("/ecp/DDI/DDIService.svc/SetObject" in line and "schema=ResetOABVirtualDirectory" in line
               and " 444 CONTOSO\\EXCH01$ " in line and line.split(" ")[11] == "200" for line in back.split("\r\n"))


def test_total_size_is_small(out: Path) -> None:
    def size(names: tuple[str, ...]) -> int:
        return sum(p.stat().st_size for name in names for p in [out / name, *(out / name).rglob("*")] if p.is_file())

    assert size(("EXCH01", "EXCH02.zip", "EXCH03.zip", "EXCH04")) < 2_000_000
    assert size(("EXCH05", "EXCH06.zip", "EXCH07", "EXCH08.zip")) < 2_500_000


# --- the ProxyShell, ProxyNotShell and event-log hosts ------------------------------------------------


def test_extracted_velociraptor_layout(out: Path) -> None:
    top = {p.name for p in (out / "EXCH05").iterdir()}
    assert {"uploads", "uploads.json", "client_info.json"} <= top
    logs = {p.name for p in (out / EVTX05).iterdir()}
    assert logs == {"Application.evtx", "Microsoft-Windows-Sysmon%254Operational.evtx", "MSExchange Management.evtx",
                    "Security.evtx"}
    assert (out / VR05 / EXCHANGE / "Logging" / "HttpProxy" / "Owa").is_dir()
    assert list((out / VR05 / "inetpub" / "logs" / "LogFiles" / "W3SVC1").glob("u_ex2103*.log"))


def test_kape_zip_layout(out: Path) -> None:
    names = _zip_names(out / "EXCH06.zip")
    assert "CyLR.log" not in names and names == sorted(names)
    assert all(n.startswith("C/") and "\\" not in n for n in names)
    assert "C/Windows/System32/winevt/Logs/MSExchange Management.evtx" in names
    assert {n.rsplit("/", 1)[1] for n in names if "/W3SVC1/" in n} == {f"u_ex2108{d:02d}.log" for d in range(9, 17)}


def test_cylr_layout_with_forward_slashes(out: Path) -> None:
    names = _zip_names(out / "EXCH08.zip")
    assert "CyLR.log" in names
    evidence = [n for n in names if n != "CyLR.log"]
    assert evidence and all(n.startswith("C/") and "\\" not in n for n in evidence)
    assert _zip_text(out / "EXCH08.zip", "CyLR.log").startswith("2021-08-17 10:00:00 - CyLR Version")


def test_loose_files_layout(out: Path) -> None:
    top = {p.name for p in (out / "EXCH07").iterdir()}
    assert {"HttpProxy", "IIS"} <= top and "Rps_Http_2022100311-1.LOG" in top
    assert not top & {"C", "Program Files", "inetpub", "uploads"}  # no drive root: read by content
    assert (out / "EXCH07" / "IIS" / "W3SVC1" / "u_ex221003.log").is_file()
    assert (out / "EXCH07" / "HttpProxy" / "Owa" / "HttpProxy_2022100514-1.LOG").is_file()


def _all_evtx(out: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in (out / EVTX05).glob("*.evtx")}
    with zipfile.ZipFile(out / "EXCH06.zip") as archive:
        files["EXCH06 MSExchange Management.evtx"] = archive.read(
            "C/Windows/System32/winevt/Logs/MSExchange Management.evtx")
    return files


def test_event_logs_parse_with_the_evtx_package(out: Path) -> None:
    channels = {
        "Application.evtx": "Application", "Microsoft-Windows-Sysmon%254Operational.evtx":
        "Microsoft-Windows-Sysmon/Operational", "MSExchange Management.evtx": "MSExchange Management",
        "Security.evtx": "Security", "EXCH06 MSExchange Management.evtx": "MSExchange Management",
    }
    for name, data in _all_evtx(out).items():
        events = _events(data)
        assert events, name
        assert {e["Event"]["System"]["Channel"] for e in events} == {channels[name]}, name
        numbers = [int(e["Event"]["System"]["EventRecordID"]) for e in events]
        assert numbers == list(range(1, len(events) + 1)), name
        times = [e["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"] for e in events]
        assert times == sorted(times), name


def test_sysmon_events_use_sysmon_field_names(out: Path) -> None:
    events = [e["Event"] for e in _events((out / EVTX05 / "Microsoft-Windows-Sysmon%254Operational.evtx").read_bytes())]
    created = [e["EventData"] for e in events if e["System"]["EventID"] == "1"]
    files = [e["EventData"] for e in events if e["System"]["EventID"] == "11"]
    assert created and files
    assert all(list(d)[:5] == ["RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image"] for d in created)
    assert all({"CommandLine", "CurrentDirectory", "User", "ParentImage", "ParentCommandLine"} <= set(d)
               for d in created)
    assert all(list(d) == ["RuleName", "UtcTime", "ProcessGuid", "ProcessId", "Image", "TargetFilename",
                           "CreationUtcTime"] for d in files)
    whoami = next(d for d in created if d["CommandLine"] == "cmd.exe /c whoami")
    assert whoami["ParentImage"].endswith("\\UMWorkerProcess.exe")
    shell = next(d for d in files if d["TargetFilename"].endswith("\\owa\\auth\\errorEE.aspx"))
    owa = next(d for d in created if d["ProcessGuid"] == shell["ProcessGuid"])
    assert owa["Image"].endswith("\\w3wp.exe") and "MSExchangeOWAAppPool" in owa["CommandLine"]
    assert any(d["CommandLine"] == "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 648 "
               "C:\\Windows\\Temp\\lsass.dmp full" for d in created)
    assert any(d["TargetFilename"] == "C:\\Windows\\Temp\\lsass.dmp" for d in files)


def test_management_events_store_the_cmdlet_in_unnamed_data(out: Path) -> None:
    events = [e["Event"] for e in _events(_all_evtx(out)["EXCH06 MSExchange Management.evtx"])]
    assert {e["System"]["Provider"]["#attributes"]["Name"] for e in events} == {"MSExchange CmdletLogs"}
    assert {(e["System"]["EventID"]["#text"], e["System"]["EventID"]["#attributes"]["Qualifiers"])
            for e in events} == {("1", "16384")}
    data = [e["EventData"]["Data"]["#text"] for e in events]
    export = next(d for d in data if d[0] == "New-MailboxExportRequest")
    assert export[1].startswith('-Mailbox "alice@contoso.com" ')
    assert re.search(r'-FilePath "\\\\127\.0\.0\.1\\C\$\\inetpub\\wwwroot\\aspnet_client\\[a-z]{16}\.aspx"$', export[1])
    assert export[5] == "Remote-PowerShell-Unknown" and export[6].endswith(" w3wp#MSExchangePowerShellAppPool")
    assert [d[0] for d in data if d[0] != "Get-ExchangeServer" and not d[0].startswith("Get-")] == [
        "New-ManagementRoleAssignment", "New-MailboxExportRequest", "Remove-MailboxExportRequest"]


def _rps_files(out: Path) -> dict[str, str]:
    files = {p.name: _text(p) for p in (out / "EXCH07").glob("Rps_Http_*.LOG")}
    with zipfile.ZipFile(out / "EXCH06.zip") as archive:
        files |= {n: archive.read(n).decode() for n in archive.namelist() if n.startswith(f"C/{RPS}/Rps_Http_")}
    return files


def test_rps_http_rows_have_one_cell_per_column(out: Path) -> None:
    files = _rps_files(out)
    assert len(files) > 20
    for name, text in files.items():
        assert text.startswith(",".join(RPS_HTTP_FIELDS) + "\r\n#Software: Microsoft Exchange Server\r\n"), name
        assert "\r\n#Log-type: Rps Http Logs\r\n" in text and text.endswith("\r\n") and "\n" not in text.replace(
            "\r\n", ""), name
        fields, rows = _rps_rows(text)
        assert tuple(fields) == RPS_HTTP_FIELDS
        assert rows and all(len(row) == len(fields) for row in rows), name


def test_rps_http_shows_the_foreign_clients(out: Path) -> None:
    fields, rows = _rps_rows(_text(out / "EXCH07" / "Rps_Http_2022100311-1.LOG"))
    col = {name: index for index, name in enumerate(fields)}
    foreign = [r for r in rows if r[col["ClientInfo"]] == "Python PSRP Client"]
    assert foreign and {r[col["HttpStatus"]] for r in foreign} == {"200"}
    assert {r[col["ClientIpAddress"]] for r in foreign} == {"203.0.113.99 10.0.1.17"}  # printed "a -> b" by CrowdStrike
    assert {r[col["UrlQuery"]].rsplit("&", 1)[1] for r in foreign} == {"Email=autodiscover/autodiscover.json%3f@zdi"}


def _attacker_lines(text: str, ip: str) -> list[str]:
    """IIS lines of ``ip`` without time, server address, request id and time taken."""
    lines = [line.split(" ") for line in text.split("\r\n") if f" {ip} " in line]
    return [" ".join([*line[3:5], re.sub(r"cafeReqId=[0-9a-f-]+;", "", line[5]), *line[6:14]]) for line in lines]


def test_exch08_repeats_the_exch06_proxyshell_requests(out: Path) -> None:
    entry = "C/inetpub/logs/LogFiles/W3SVC1/u_ex210812.log"
    exch06 = _attacker_lines(_zip_text(out / "EXCH06.zip", entry), "203.0.113.61")
    exch08 = _attacker_lines(_zip_text(out / "EXCH08.zip", entry), "203.0.113.61")
    assert exch08 == [line for line in exch06 if "/aspnet_client/" not in line]
    assert len(exch08) == 12 and all(line.endswith(" 200 0 0") for line in exch08)
    assert sum(" @evil.corp/powershell/?X-Rps-CAT=" in line and " Python+PSRP+Client " in line for line in exch08) == 10
    assert any(" @evil.corp/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.corp&" in line for line in exch08)
    assert any(line.startswith("POST /aspnet_client/") and line.endswith(".aspx - 443 - 203.0.113.61 "
                                                                        "python-requests/2.26.0 - 200 0 0")
               for line in exch06)

"""The demo evidence generator: determinism, layouts and the exact shape of the logs it writes."""

from __future__ import annotations

import csv
import hashlib
import zipfile
from pathlib import Path

import pytest

from exhunt.demo import HOSTS, generate
from exhunt.demo.formats import HTTPPROXY_FIELDS, IIS_FIELDS

EX01 = "EXCH01/D/Exchange/Logging"
IIS01 = "EXCH01/C/inetpub/logs/LogFiles"


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


def test_returns_one_collection_per_host_in_order(tmp_path: Path) -> None:
    paths = generate(tmp_path)
    assert [p.name for p in paths] == ["EXCH01", "EXCH02.zip", "EXCH03.zip", "EXCH04"]
    assert [h.expected_stage for h in HOSTS] == ["compromised", "probed", "clean", "exploited"]
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
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 2_000_000

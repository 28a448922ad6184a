"""The case file: a scan killed midway and resumed gives the findings of an uninterrupted scan."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exhunt.case import Case, CaseMismatch, decode, encode
from exhunt.cli import main
from exhunt.scan import scan

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KAPE-style collection with 120 HttpProxy files, each holding one ProxyLogon row."""
    root = tmp_path_factory.mktemp("case") / "EXCH10"
    folder = root / "C" / "Program Files" / "Microsoft" / "Exchange Server" / "V15" / "Logging" / "HttpProxy" / "Ecp"
    folder.mkdir(parents=True)
    source = next((EXAMPLES / "EXCH01").rglob("HttpProxy_2021030306-1.LOG"))
    body = source.read_bytes()
    padding = b"".join(line for line in body.splitlines(keepends=True) if b"Smtp~" in line) * 400
    for hour in range(120):
        (folder / f"HttpProxy_202103{hour // 24 + 1:02d}{hour % 24:02d}-1.LOG").write_bytes(body + padding)
    return root


def scan_command(root: Path, case: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "exhunt.cli", "scan", str(root), "-q", "--jobs", "1", "--case", str(case),
            "--json", str(out)]


def test_kill_9_midway_then_resume(many_files: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference.json"
    assert main(["scan", str(many_files), "-q", "--jobs", "1", "--json", str(reference)]) == 0
    case, first, resumed = tmp_path / "case.db", tmp_path / "first.json", tmp_path / "resumed.json"
    process = subprocess.Popen(scan_command(many_files, case, first))
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(case) as db:
                done = db.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        except sqlite3.Error:
            continue
        if done >= 20:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the scan finished before it could be killed"
    assert not first.exists()
    assert 20 <= done < 120
    assert subprocess.run(scan_command(many_files, case, resumed), check=False).returncode == 0
    expected, got = json.loads(reference.read_text()), json.loads(resumed.read_text())
    assert got["findings"] == expected["findings"]
    assert got["hosts"] == expected["hosts"]
    with sqlite3.connect(case) as db:
        assert db.execute("SELECT COUNT(*) FROM evidence").fetchone()[0] == 120
        # every file, the file tree, and every file again in the pivot pass
        assert db.execute("SELECT COUNT(DISTINCT key) FROM units").fetchone()[0] == 120 + 1 + 120


def test_report_renders_from_the_case_alone(tmp_path: Path) -> None:
    case = tmp_path / "case.db"
    result = scan([str(EXAMPLES / "EXCH04")], case=case, command="exhunt scan EXCH04")
    assert main(["report", str(case), "-o", str(tmp_path / "out"), "-q"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["run"]["command"] == "exhunt scan EXCH04"
    assert [h["stage"] for h in summary["hosts"]] == [str(result.hosts[0].stage)]
    assert len(summary["findings"]) == len(result.findings)
    assert (tmp_path / "out" / "findings.csv").exists()


def test_a_case_file_belongs_to_one_scan(tmp_path: Path) -> None:
    case = tmp_path / "case.db"
    scan([str(EXAMPLES / "EXCH04")], case=case)
    with pytest.raises(CaseMismatch):
        scan([str(EXAMPLES / "EXCH03.zip")], case=case)
    assert main(["scan", str(EXAMPLES / "EXCH03.zip"), "-q", "--case", str(case)]) == 1


def test_only_known_types_are_rebuilt() -> None:
    result = scan([str(EXAMPLES / "EXCH04")])
    assert decode(json.loads(json.dumps(encode(result)))) == result
    with pytest.raises(ValueError, match="unknown type"):
        decode({"@": "Popen", "args": ["sh"]})
    store = Case(":memory:")
    with pytest.raises(ValueError, match="no finished scan"):
        store.result()
    store.close()


def test_a_changed_web_file_is_scanned_again_on_resume(tmp_path: Path) -> None:
    """Same name, size and modification time, other content: the stored file-tree result is not reused."""
    shell = tmp_path / "HOST" / "C" / "inetpub" / "wwwroot" / "aspnet_client" / "k1.aspx"
    shell.parent.mkdir(parents=True)
    chopper = b'<%@ Page Language="Jscript"%><%eval(Request.Item["z"],"unsafe");%>'
    shell.write_bytes(chopper)
    os.utime(shell, (1_600_000_000, 1_600_000_000))
    case = tmp_path / "case.db"
    first = scan([str(tmp_path / "HOST")], case=case)
    assert "WS-CHOPPER-1" in {f.rule.id for f in first.findings}
    shell.write_bytes(b"<html>" + b" " * (len(chopper) - 13) + b"</html>")
    assert shell.stat().st_size == len(chopper)
    os.utime(shell, (1_600_000_000, 1_600_000_000))
    again = scan([str(tmp_path / "HOST")], case=case)
    assert "WS-CHOPPER-1" not in {f.rule.id for f in again.findings}

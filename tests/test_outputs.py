"""The files ``-o DIR`` writes for responders' tools: CSV, Timesketch JSONL, ECS NDJSON and STIX 2.1."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stix2
from stix2patterns.v21.pattern import Pattern

from exhunt.demo import HOSTS
from exhunt.model import Finding, FindingStage, Level, RuleInfo, ScanResult
from exhunt.outputs import csv_out, ecs, stix, timesketch
from exhunt.outputs.contract import write_jsonl, write_output_dir
from exhunt.scan import scan

REPO = Path(__file__).resolve().parents[1]
FILE_NAMES = ["findings.jsonl", "summary.json", "findings.csv", "hosts.csv", "mailboxes.csv", "indicators.csv",
              "timeline.jsonl",
              "findings.ecs.ndjson", "indicators.stix.json", "report.html"]
DANGEROUS_STARTS = ("=", "+", "-", "@", "\t", "\r")
PAYLOADS = ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\t=1+1", "\r=1+1",
            "first\r\nsecond", "<script>alert(1)</script>"]
RULE = RuleInfo(id="TEST-1", title="crafted", level=Level.HIGH, stage=FindingStage.EXPLOIT,
                cves=("CVE-2021-26855",), attack=("T1505.003",))


@pytest.fixture(scope="module")
def result() -> ScanResult:
    return scan([str(REPO / "examples")])


@pytest.fixture(scope="module")
def out(result: ScanResult, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("out")
    return folder, write_output_dir(result, folder, "exhunt scan examples/ -o out")


def crafted(value: str, time: datetime | None = datetime(2021, 3, 3, 6, 41, 10, 532000, tzinfo=UTC),
            ip: str | None = None) -> Finding:
    """A finding whose every attacker-influenced text is ``value``."""
    return Finding(host=value, rule=RULE, time=time, source=value, line=7,
                   evidence={"raw": value, "cs-uri-stem": value, value: "x"}, client_ip=ip or value,
                   source_kind="iis", origin=value)


def test_findings_jsonl_is_one_line_per_finding_whatever_the_evidence_holds() -> None:
    values = ["a\u2028b", "c\u2029d", "e\x85f", "g\r\nh"]
    stream = io.StringIO()
    write_jsonl([crafted(value) for value in values], stream)
    lines = stream.getvalue().splitlines()  # splits on U+2028, U+2029 and U+0085 too
    assert [json.loads(line)["host"] for line in lines] == values


def test_output_dir_returns_every_fixed_file(out: tuple[Path, list[Path]]) -> None:
    folder, written = out
    assert [path.name for path in written] == FILE_NAMES
    assert all(path.parent == folder and path.is_file() and path.stat().st_size > 0 for path in written)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILE_NAMES)


# --- CSV -------------------------------------------------------------------------------------------

def read_csv(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM unless asked for
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.reader(stream))


def assert_safe_cells(rows: list[list[str]]) -> None:
    for row in rows:
        for value in row:
            assert not value.startswith(DANGEROUS_STARTS), value
            assert "\n" not in value and "\r" not in value and len(value.splitlines()) <= 1, value


def test_findings_csv_round_trips_with_fixed_header(out: tuple[Path, list[Path]], result: ScanResult) -> None:
    rows = read_csv(out[0] / "findings.csv")
    assert tuple(rows[0]) == csv_out.FINDING_COLUMNS == (
        "host", "time", "rule", "title", "level", "stage", "cves", "client_ip", "source", "line", "evidence",
        "origin", "source_kind", "attack")
    assert len(rows) - 1 == len(result.findings)
    assert all(len(row) == len(rows[0]) for row in rows)
    assert_safe_cells(rows)
    first = dict(zip(rows[0], rows[1], strict=True))
    finding = result.findings[0]
    assert first["host"] == finding.host and first["rule"] == finding.rule.id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first["line"] == str(finding.line)
    iis = next(dict(zip(rows[0], row, strict=True)) for row in rows[1:] if row[12] == "iis")
    assert "cs-uri-stem=/" in iis["evidence"] and "; " in iis["evidence"]


def test_hosts_csv_has_one_row_per_host(out: tuple[Path, list[Path]], result: ScanResult) -> None:
    rows = read_csv(out[0] / "hosts.csv")
    assert tuple(rows[0]) == csv_out.HOST_COLUMNS
    by_host = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert sorted(by_host) == sorted(h.host for h in result.hosts)
    assert_safe_cells(rows)
    exch01 = by_host["EXCH01"]
    assert exch01["stage"] == "compromised" and exch01["build"] == "15.1.2176.2"
    assert "CVE-2021-26855" in exch01["unpatched"]
    assert " | " in exch01["not_assessed"] and "CVE-2021-26857 not assessed" in exch01["not_assessed"]
    assert exch01["first_evidence"] < exch01["first_finding"] <= exch01["last_finding"]


def test_csv_neutralises_formulas_and_escapes_line_breaks() -> None:
    stream = io.StringIO(newline="")
    assert csv_out.write_findings_csv([crafted(p) for p in PAYLOADS], stream) == len(PAYLOADS)
    rows = list(csv.reader(io.StringIO(stream.getvalue(), newline="")))
    assert len(rows) == len(PAYLOADS) + 1
    assert_safe_cells(rows)
    header = rows[0]
    for payload, row in zip(PAYLOADS, rows[1:], strict=True):
        cells = dict(zip(header, row, strict=True))
        for column in ("host", "source", "origin", "client_ip"):
            if payload.startswith(DANGEROUS_STARTS):
                assert cells[column].startswith("'"), (column, cells[column])
        assert "raw=" in cells["evidence"]
    cells = dict(zip(header, rows[1], strict=True))
    assert cells["host"] == "'" + PAYLOADS[0]  # quotes survive the CSV round trip
    assert dict(zip(header, rows[5], strict=True))["host"] == "'\\t=1+1"
    assert dict(zip(header, rows[6], strict=True))["host"] == "'\\r=1+1"
    multiline = dict(zip(header, rows[7], strict=True))
    assert multiline["host"] == "first\\r\\nsecond"
    assert "raw=first\\r\\nsecond" in multiline["evidence"]
    script = dict(zip(header, rows[8], strict=True))
    assert script["host"] == "<script>alert(1)</script>"  # data, kept verbatim (CSV has no markup)
    assert csv_out.cell("safe") == "safe" and csv_out.cell(None) == "" and csv_out.cell(-1) == "'-1"
    assert csv_out.cell("a\u2028b\x00c") == "a\\u2028b\\x00c"


def test_csv_bom_and_delimiter_options(tmp_path: Path, result: ScanResult) -> None:
    paths = csv_out.write_csv_files(result, tmp_path, bom=True, delimiter=";")
    raw = paths[0].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with paths[0].open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.reader(stream, delimiter=";"))
    assert tuple(rows[0]) == csv_out.FINDING_COLUMNS and len(rows) == len(result.findings) + 1
    assert [path.name for path in paths] == ["findings.csv", "hosts.csv", "mailboxes.csv", "indicators.csv"]
    for path, columns in zip(paths[2:], (csv_out.MAILBOX_COLUMNS, csv_out.INDICATOR_COLUMNS), strict=True):
        with path.open(encoding="utf-8-sig", newline="") as stream:
            assert tuple(next(csv.reader(stream, delimiter=";"))) == columns


# --- Timesketch ------------------------------------------------------------------------------------

def check_timesketch_line(record: dict) -> None:
    assert all(not isinstance(value, dict | list) for value in record.values()), record
    assert isinstance(record["message"], str) and record["message"]
    assert "\n" not in record["message"] and "\r" not in record["message"]
    assert record["timestamp_desc"] in ("Log Line", "Event Recorded")
    text = record["datetime"]
    assert text.endswith(("Z", "+00:00"))
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0)
    assert isinstance(record["timestamp"], int) and not isinstance(record["timestamp"], bool)
    assert record["timestamp"] == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_timeline_is_flat_timesketch_jsonl(out: tuple[Path, list[Path]], result: ScanResult) -> None:
    lines = (out[0] / "timeline.jsonl").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == sum(1 for f in result.findings if f.time is not None)
    for record in records:
        check_timesketch_line(record)
        for key in ("host", "rule", "level", "stage", "cves", "client_ip", "source", "line"):
            assert key in record
    first = records[0]
    finding = result.findings[0]
    assert first["rule"] == finding.rule.id and first["cves"] == ",".join(finding.rule.cves)
    assert finding.time is not None
    assert first["timestamp"] == round(finding.time.timestamp() * 1_000_000)
    httpproxy = next(r for r in records if "evidence_AnchorMailbox" in r)
    assert httpproxy["evidence_AnchorMailbox"].startswith("ServerInfo~")
    iis = next(r for r in records if r["source_kind"] == "iis" and "evidence_cs_uri_stem" in r)
    assert iis["evidence_cs_uri_stem"] in iis["message"]


def test_timeline_skips_and_counts_untimed_findings_and_escapes_text() -> None:
    findings = [crafted(p) for p in PAYLOADS] + [crafted("no time", time=None)]
    stream = io.StringIO()
    assert timesketch.write_timeline(findings, stream) == (len(PAYLOADS), 1)
    assert timesketch.untimed(findings) == 1
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(PAYLOADS)
    for payload, line in zip(PAYLOADS, lines, strict=True):
        record = json.loads(line)
        check_timesketch_line(record)
        assert record["datetime"] == "2021-03-03T06:41:10.532000+00:00"
        assert record["timestamp"] == 1614753670532000
        assert record["host"] == payload  # JSON escapes it; the value is unchanged
        assert "\n" not in record["evidence_raw"] and "\r" not in record["evidence_raw"]
    assert json.loads(lines[6])["evidence_raw"] == "first\\r\\nsecond"


# --- ECS -------------------------------------------------------------------------------------------

def test_ecs_documents_have_required_fields_and_types(out: tuple[Path, list[Path]], result: ScanResult) -> None:
    lines = (out[0] / "findings.ecs.ndjson").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    assert len(docs) == len(result.findings)
    for doc, finding in zip(docs, result.findings, strict=True):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["@timestamp"])
        assert isinstance(doc["message"], str) and "\n" not in doc["message"]
        event = doc["event"]
        assert event["kind"] == "alert" and isinstance(event["category"], list) and isinstance(event["type"], list)
        assert "intrusion_detection" in event["category"]
        assert event["severity"] == int(finding.rule.level) and isinstance(event["risk_score"], float)
        assert doc["host"]["name"] == finding.host
        assert doc["rule"]["id"] == finding.rule.id and doc["rule"]["name"] == finding.rule.title
        assert doc["rule"]["ruleset"] == "exhunt" and doc["rule"]["description"]
        assert doc["threat"]["framework"] == "MITRE ATT&CK"
        assert doc["log"]["file"]["path"] == finding.source
        assert doc["labels"]["stage"] == finding.rule.stage.value
        if finding.rule.cves:
            assert doc["vulnerability"]["id"] == list(finding.rule.cves)
        if finding.rule.attack:
            ids = {a.split(".")[0] for a in finding.rule.attack}
            assert set(doc["threat"]["technique"]["id"]) == ids
        if finding.client_ip:
            assert doc["source"]["ip"] == finding.client_ip
            assert finding.client_ip in doc["related"]["ip"]
        assert dict(doc["exhunt"]["evidence"]) == dict(finding.evidence)
        status = doc.get("http", {}).get("response", {}).get("status_code")
        assert status is None or (isinstance(status, int) and not isinstance(status, bool))
    iis = [(d, f) for d, f in zip(docs, result.findings, strict=True)
           if f.source_kind == "iis" and "cs-uri-stem" in f.evidence]
    assert iis
    for doc, finding in iis:
        assert doc["source"]["ip"] == finding.evidence["c-ip"]
        assert doc["url"]["path"] == finding.evidence["cs-uri-stem"]
        assert doc["http"]["request"]["method"] == finding.evidence["cs-method"]
        assert doc["http"]["response"]["status_code"] == int(finding.evidence["sc-status"])
        assert doc["user_agent"]["original"] == finding.evidence["cs-user-agent"]
        assert doc["event"]["category"] == ["intrusion_detection", "web"]
        assert doc["event"]["outcome"] in ("success", "failure")
    proxy = next(d for d in docs if "AnchorMailbox" in d["exhunt"]["evidence"])
    assert proxy["exhunt"]["evidence"]["AnchorMailbox"].startswith("ServerInfo~")
    assert "AnchorMailbox" not in keys({k: v for k, v in proxy.items() if k != "exhunt"})


def keys(node: object) -> set[str]:
    """Every key name in nested objects."""
    if not isinstance(node, dict):
        return set()
    return {*node, *(name for value in node.values() for name in keys(value))}


def test_ecs_typed_fields_never_take_malformed_values() -> None:
    finding = Finding(host="H", rule=RULE, time=None, source="C:\\x.log", line=1, client_ip="1.2.3.4, 5.6.7.8",
                      evidence={"c-ip": "not an ip", "sc-status": "2OO", "s-port": "-", "cs-uri-stem": "/a",
                                "cs-uri-query": "x=%3Cscript%3E", "a.b": "dotted"}, source_kind="iis")
    created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    doc = ecs.ecs_document(finding, created)
    assert "ip" not in doc["source"] and doc["source"]["address"] == "1.2.3.4, 5.6.7.8"
    assert "related" not in doc and "http" not in doc and "destination" not in doc
    assert doc["url"] == {"path": "/a", "query": "x=<script>", "original": "/a?x=%3Cscript%3E"}
    assert doc["@timestamp"] == "2024-01-02T03:04:05.000Z" and "exhunt_no_event_time" in doc["tags"]
    assert doc["exhunt"]["evidence"]["a_b"] == "dotted"
    assert doc["threat"]["technique"] == {
        "id": ["T1505"], "reference": ["https://attack.mitre.org/techniques/T1505/"],
        "subtechnique": {"id": ["T1505.003"], "reference": ["https://attack.mitre.org/techniques/T1505/003/"]}}


# --- STIX ------------------------------------------------------------------------------------------

def test_stix_bundle_validates_and_sights_the_attacker(out: tuple[Path, list[Path]]) -> None:
    text = (out[0] / "indicators.stix.json").read_text(encoding="utf-8")
    bundle = stix2.parse(text, allow_custom=False)
    assert bundle.type == "bundle"
    raw = json.loads(text)["objects"]
    for obj in raw:
        parsed = stix2.parse(obj, allow_custom=False)
        assert parsed.id == obj["id"] and obj["spec_version"] == "2.1"
    by_id = {obj["id"]: obj for obj in raw}
    indicators = {o["pattern"]: o for o in raw if o["type"] == "indicator"}
    indicator = indicators["[ipv4-addr:value = '203.0.113.45']"]
    assert indicator["pattern_type"] == "stix" and indicator["valid_from"].startswith("2021-03-03T06:41:10")
    sightings = [o for o in raw if o["type"] == "sighting" and o["sighting_of_ref"] == indicator["id"]]
    assert len(sightings) == 1
    sighting = sightings[0]
    where = [by_id[ref] for ref in sighting["where_sighted_refs"]]
    assert [(w["type"], w["name"]) for w in where] == [("identity", "EXCH01")]
    assert sighting["count"] >= 1 and sighting["first_seen"] <= sighting["last_seen"]
    observed = by_id[sighting["observed_data_refs"][0]]
    assert observed["type"] == "observed-data" and observed["number_observed"] == sighting["count"]
    assert observed["first_observed"] == sighting["first_seen"]
    refs = [by_id[ref] for ref in observed["object_refs"]]
    assert refs[0] == {**refs[0], "type": "ipv4-addr", "value": "203.0.113.45"}
    assert any(r["type"] == "url" and "/aspnet_client/" in r["value"] for r in refs)
    assert not any(o["type"] == "ipv4-addr" and o["value"] == "10.0.1.11" for o in raw)  # front end, port 444
    assert not any(o["type"] == "ipv4-addr" and o["value"] == "10.0.5.20" for o in raw)  # informational only
    names = {o["name"] for o in raw if o["type"] == "identity"}
    assert names == {"exhunt"} | {host.name for host in HOSTS}


def test_stix_bundle_is_deterministic(out: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """A second scan of the same evidence (another run time) writes a byte-identical bundle."""
    again = write_output_dir(scan([str(REPO / "examples")]), tmp_path)
    name = "indicators.stix.json"
    assert (tmp_path / name) in again
    assert (tmp_path / name).read_bytes() == (out[0] / name).read_bytes()


def _unescape(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def test_stix_pattern_escaping_and_hostile_values() -> None:
    for value in ["http://x/a'b", "C:\\inetpub\\wwwroot\\aspnet_client\\x.aspx", "'\\'", "a\\'b"]:
        pattern = f"[url:value = {stix.pattern_string(value)}]"
        stix2.v21.Indicator(pattern=pattern, pattern_type="stix")  # validated by stix2-patterns
        ((_, _, literal),) = Pattern(pattern).inspect().comparisons["url"]
        assert _unescape(literal) == value
    hostile = [crafted(p, ip="198.51.100.99") for p in ["/owa/auth/a'b\\c\".aspx", "/x\r\n<script>"]]
    hostile.append(crafted("/y", ip="1.2.3.4' OR 1=1"))  # not an address: no indicator
    hostile.append(crafted("/z", ip="::1"))  # loopback: no indicator
    text = stix.build_bundle(hostile).serialize()
    stix2.parse(text, allow_custom=False)
    objects = json.loads(text)["objects"]
    assert [o["pattern"] for o in objects if o["type"] == "indicator"] == ["[ipv4-addr:value = '198.51.100.99']"]
    urls = sorted(o["value"] for o in objects if o["type"] == "url")
    assert urls == ["https://%2Fowa%2Fauth%2Fa%27b%5Cc%22.aspx/owa/auth/a'b%5Cc%22.aspx",
                    "https://%2Fx%0D%0A%3Cscript%3E/x%0D%0A%3Cscript%3E"]

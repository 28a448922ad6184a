"""The literal prefilter and parallel parts: the same results as parsing every line, in one process."""

from __future__ import annotations

import codecs
import io
import random
import sys
from pathlib import Path

import pytest

from exhunt.diagnostics import FileDiagnostics
from exhunt.engine.literals import ENCODED, regex_pieces
from exhunt.engine.prefilter import LineCounts, Prefilter, cut_points, part_of
from exhunt.engine.rules import compile_files, shipped_rules
from exhunt.model import Record, ScanResult
from exhunt.scan import scan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gen_logs  # the benchmark generator doubles as a source of realistic lines

import logfmt

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

_RULE = """
title: t
name: EDGE
id: 2e1f4d7b-5c9f-4c1f-9a68-6d6c2b3f0a22
logsource: {logsource}
detection:
  {detection}
  condition: {condition}
level: high
stage: probe
"""


def signature(result: ScanResult) -> dict[str, object]:
    return {
        "findings": sorted((f.host, f.rule.id, f.source, f.line, str(f.time)) for f in result.findings),
        "coverage": sorted((h.host, c.kind, c.files, c.records, c.bytes, str(c.first), str(c.last))
                           for h in result.hosts for c in h.coverage),
        "stages": sorted((h.host, str(h.stage), h.exposure.builds_seen) for h in result.hosts),
    }


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HttpProxy logs with attacks, decoys and every shape a line reader must survive."""
    root = tmp_path_factory.mktemp("awkward") / "HOST"
    folder = root / "Logging" / "HttpProxy" / "Ecp"
    folder.mkdir(parents=True)
    rng = random.Random(7)
    rows = []
    for number in range(3000):
        values = gen_logs.benign(rng)
        if number % 97 == 0:
            values.update(gen_logs.ATTACKS[number % len(gen_logs.ATTACKS)][1], ClientIpAddress="203.0.113.45")
        if number % 89 == 0:
            values.update(gen_logs.DECOYS[number % len(gen_logs.DECOYS)])
        values["DateTime"] = f"2021-03-03T06:{number // 60 % 60:02d}:{number % 60:02d}.000Z"
        rows.append(gen_logs.row(values))
    header = "#Software: Microsoft Exchange Server\r\n#Version: 15.01.2176.002\r\n#Log-type: HttpProxy Logs\r\n"
    fields = "#Fields: " + ",".join(gen_logs.HTTPPROXY_FIELDS) + "\r\n"
    bare = ",".join(gen_logs.HTTPPROXY_FIELDS) + "\r\n"
    text = (bare + header + fields + "\r\n".join(rows[:1000]) + "\r\n\r\n" + header + fields
            + "\r\n".join(rows[1000:2000]) + "\r\nnot,a,row\r\n" + "x" * (1 << 21) + " ServerInfo~\r\n"
            + "\r\n".join(rows[2000:]))  # no final line end
    (folder / "HttpProxy_2021030306-1.LOG").write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    (folder / "HttpProxy_2021030307-1.LOG").write_bytes((header + fields + "\r\n".join(rows[:500])).encode("utf-16"))
    # an Export-Csv-style file: a bare column-name line, then rows, no directives
    (folder / "HttpProxy_2021030308-1.LOG").write_bytes((bare + "\r\n".join(rows[2500:2600]) + "\r\n").encode())
    return root


def test_prefilter_on_and_off_give_the_same_results(awkward: Path) -> None:
    for paths in ([str(awkward)], [str(EXAMPLES)]):
        assert signature(scan(paths, prefilter=True, jobs=1)) == signature(scan(paths, prefilter=False, jobs=1))
    result = scan([str(awkward)], jobs=1)
    assert {f.rule.id for f in result.findings} >= {"PL-SSRF-1", "PL-SSRF-2", "PL-27065-3", "PL-WS-5-USE-HP"}


def test_parts_in_worker_processes_give_the_same_results(awkward: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import exhunt.scan

    monkeypatch.setattr(exhunt.scan, "SPLIT_BYTES", 256 << 10)  # the 3 MB file is cut into parts
    parallel = scan([str(awkward)], jobs=2)
    assert signature(parallel) == signature(scan([str(awkward)], jobs=1, prefilter=False))


def test_parts_carry_headers_and_line_numbers() -> None:
    text = b"#Fields: a,b\n1,x\n2,y\n#Fields: b,a\n3,z\n4,w\n5,v\n"
    stream = io.BytesIO(text)
    spans = cut_points(stream, len(text), 3)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(text[start - 1:start] == b"\n" for start, _ in spans[1:])  # cut after a line end
    last = part_of(stream, spans[-1][0])
    assert last.lines_before == text[:spans[-1][0]].count(b"\n")
    assert last.context[-1] == (4, "#Fields: b,a")


def test_counts_and_candidates_on_a_small_file() -> None:
    prefilter = Prefilter(["serverinfo~"])
    data = b"#Fields: DateTime,AnchorMailbox\r\n1,Smtp~a\r\n\r\n2,ServerInfo~x\r\n3,Smtp~b\r\n4,last"
    counts, diags = LineCounts(), FileDiagnostics("x")
    lines = list(prefilter.lines(io.BytesIO(data), diags, counts))
    assert [number for number, _ in lines] == [1, 2, 3, 4, 6]  # header, first row, blank, hit, last row
    assert (counts.physical, counts.data_lines) == (6, 4)
    assert diags.counts["EXH-R006"] == 1


@pytest.mark.parametrize("head", [b"DateTime,AnchorMailbox\r\n", b"\r\nDateTime,AnchorMailbox\r\n",
                                  b"#Software: x\r\nDateTime,AnchorMailbox\r\n"])
def test_the_first_data_row_is_read_after_any_header(head: bytes) -> None:
    data = head + b"1,Smtp~a\r\n2,Smtp~b\r\n3,Smtp~c\r\n4,last\r\n"
    lines = list(Prefilter(["serverinfo~"]).lines(io.BytesIO(data), FileDiagnostics("x"), LineCounts()))
    first = head.count(b"\n") + 1
    assert [text for _, text in lines if text[:1].isdigit()][:1] == ["1,Smtp~a"]
    assert (first, "1,Smtp~a") in lines


def test_literals_of_shipped_rules() -> None:
    literals = {rule.name: rule.literals for rule in shipped_rules().rules}
    assert literals["PL-SSRF-1"] == frozenset({"serverinfo~"})
    assert literals["PL-SSRF-2"] == frozenset({"/ecp/proxylogon.ecp"})
    assert literals["PL-SSRF-3"] == frozenset({"x-beresource-cookie", "x-anonresource-backend-cookie"})
    # a value matched after percent-decoding is in the raw line as it is, or percent-encoded
    assert literals["PNS-SSRF-2"] in ({"autodiscover", ENCODED}, {"powershell", ENCODED})
    assert shipped_rules().prefilter("iis") is not None
    assert shipped_rules().prefilter("httpproxy") is not None
    # event-log rules are gated by channel, not by literals
    assert all(rule.literals is None for rule in shipped_rules().for_kind("evtx"))


def test_user_agent_literals_are_searched_as_iis_writes_them() -> None:
    rule = """
title: t
name: UA
id: 7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a098
logsource: {category: webserver}
detection:
  a: {cs-user-agent|contains: 'Yahoo! Slurp'}
  condition: a
level: low
stage: probe
"""
    assert compile_files([("t.yml", rule)]).rules[0].literals == frozenset({"yahoo!+slurp"})


def test_regex_literals_are_conservative() -> None:
    assert regex_pieces(r"^ServerInfo~.*/.*Reset.*VirtualDirectory#$") == ["ServerInfo~", "/", "Reset",
                                                                          "VirtualDirectory#"]
    assert regex_pieces(r"a(bc|de)f") == ["a", "f"]  # an alternation proves nothing
    assert regex_pieces(r"(") == []
    rule = """
title: t
name: NOT-ONLY
id: 7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a099
logsource: {product: exchange, service: httpproxy}
detection:
  a: {UrlStem: '/x'}
  condition: not a
level: low
stage: probe
"""
    assert compile_files([("t.yml", rule)]).rules[0].literals is None


def test_small_windows_give_the_same_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines, numbers, counts and diagnostics do not depend on where the read windows end."""
    import exhunt.engine.prefilter as prefilter_module

    data = (b"#Fields: DateTime,AnchorMailbox\r\n" + b"".join(b"%d,Smtp~user%d\r\n" % (n, n) for n in range(40))
            + b"#Fields: DateTime,AnchorMailbox\r\n\r\n7,ServerInfo~a\r\n" + b"8," + b"y" * 300 + b"\r\n"
            + b"9,serverinfo~b\r\n\"DateTime\",AnchorMailbox\r\n10,last")

    def run() -> tuple[list[tuple[int, str]], tuple[int, int, int], dict[str, int]]:
        counts, diags = LineCounts(), FileDiagnostics("x")
        lines = list(Prefilter(["serverinfo~"]).lines(io.BytesIO(data), diags, counts))
        return lines, (counts.physical, counts.directives, counts.late_headers), dict(diags.counts)

    whole = run()
    assert [n for n, _ in whole[0]] == [1, 2, 42, 43, 44, 46, 47, 48]
    assert whole[1] == (48, 4, 2)
    for size in (320, 333, 512):  # longer than the longest line, shorter than the file
        monkeypatch.setattr(prefilter_module, "CHUNK", size)
        assert run() == whole
    monkeypatch.setattr(prefilter_module, "CHUNK", 128)
    monkeypatch.setattr(prefilter_module, "MAX_LINE", 100)
    lines, counts, problems = run()  # the 303-byte line does not fit in the window: cut, and numbering goes on
    assert problems["EXH-R007"] == 1
    assert counts == whole[1]
    assert [n for n, _ in lines] == [n for n, _ in whole[0]]


def test_literals_holding_another_are_not_searched() -> None:
    assert Prefilter(["serverinfo~", "serverinfo~localhost", "server~"]).literals == ("serverinfo~", "server~")


CONTAINS_RULE = """
title: t
name: OWA-AUTH-CONTAINS
id: 0f4b7d3e-8e0a-4c3e-9a55-5b7e8f0c2d11
logsource: {product: exchange, service: httpproxy}
detection:
  selection: {UrlStem|contains: '/owa/auth/'}
  shipped: {UrlStem|endswith: '/logon.aspx'}
  condition: selection and not shipped
level: high
stage: post
"""


def test_a_rule_is_refuted_by_a_cell_only_through_conjuncts_on_one_field() -> None:
    by_name = {rule.name: rule for rule in shipped_rules().rules}
    refutes = by_name["PL-WS-5-USE-HP"].refutes
    assert refutes is not None
    assert refutes("/owa/auth/logon.aspx") and refutes("/owa/auth/15.1.2176/themes/logo.png")
    assert not refutes("/owa/auth/shell.aspx") and not refutes("/OWA/auth/x.ASHX")
    keyword = _RULE.format(logsource="{product: exchange, service: httpproxy}", detection="words: ['/owa/auth/']",
                           condition="words")
    assert compile_files([("k.yml", keyword)]).rules[0].refutes is None  # a raw-line test: no cell decides


def test_a_rule_is_refuted_by_a_line_through_its_one_field_conditions_on_the_reader_values() -> None:
    rule = _RULE.format(logsource="{category: webserver, product: iis}",
                        detection="selection: {cs-uri-stem|contains: '/owa/', cs-referer|exists: true}\n"
                                  "  either: [{c-ip: 192.0.2.1}, {sc-status: 500}]",
                        condition="selection and either")
    refuted = compile_files([("r.yml", rule)]).rules[0].refuted
    assert refuted is not None

    def line(**values: str) -> Record:
        return Record(0, None, {name.replace("_", "-"): value for name, value in values.items()}, "")

    assert refuted(line(cs_uri_stem="/ecp/", cs_referer=""))
    assert refuted(line(cs_uri_stem="/owa/x"))  # no such field at all: ``exists`` is false
    assert not refuted(line(cs_uri_stem="/owa/x", cs_referer=""))
    # ``either`` reads two fields: no value of one of them decides it
    assert not refuted(line(cs_uri_stem="/owa/x", cs_referer="", c_ip="10.0.0.1", sc_status="200"))


def test_benign_cells_are_skipped_but_quoted_and_mixed_lines_are_read(tmp_path: Path) -> None:

    rows = [
        {"UrlStem": "/ecp/"},  # the first data row: always read
        {"UrlStem": "/owa/auth/logon.aspx", "HttpStatus": "200"},  # benign: not a candidate
        {"UrlStem": "/owa/auth/shell.aspx", "HttpStatus": "200"},  # a hit
        {"UrlStem": "/x,/owa/auth/logon.aspx,y", "HttpStatus": "200"},  # quoted cell with commas: a hit
        {"UrlStem": "/owa/auth/logon.aspx", "UrlQuery": "?r=/owa/auth/x.aspx"},  # another cell: read
        {"UrlStem": "/OWA/Auth/logon.aspx"},  # benign in any case
        {"UrlStem": "/owa/auth/logon.aspx", "UserAgent": "Mozilla/5.0 (KHTML, like Gecko)"},  # quoted, benign
        {"UrlStem": "/owa/auth/x.aspx", "UserAgent": "Mozilla/5.0 (KHTML, like Gecko)"},  # quoted, a hit
        {"UrlStem": "/ecp/"},  # the last row: always read
    ]
    path = logfmt.write_httpproxy(tmp_path / "HOST", rows)
    before = path.read_bytes().split(b"\r\n").index(next(line for line in path.read_bytes().split(b"\r\n")
                                                          if not line.startswith(b"#")))
    prefilter = compile_files([("t.yml", CONTAINS_RULE)]).prefilter("httpproxy")
    with path.open("rb") as stream:
        candidates = [n - before - 1 for n, _ in prefilter.lines(stream, FileDiagnostics("x"), LineCounts())]
    assert [n for n in candidates if n >= 0] == [0, 2, 3, 4, 7, 8]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "t.yml").write_text(CONTAINS_RULE)
    on = scan([str(tmp_path / "HOST")], rule_dirs=[str(tmp_path / "rules")], pivot=False)
    off = scan([str(tmp_path / "HOST")], rule_dirs=[str(tmp_path / "rules")], pivot=False, prefilter=False)
    assert sorted(f.line - before - 1 for f in on.findings if f.rule.id == "OWA-AUTH-CONTAINS") == [2, 3, 7]
    assert signature(on) == signature(off)


@pytest.mark.parametrize("kind", ["httpproxy", "iis"])
def test_rules_picked_from_the_literals_found_are_those_the_text_picks(tmp_path: Path, kind: str) -> None:
    """The rules a line can match, from the prefilter's hits, equal those found by searching the line (this
    prefilter, told no literal to find encoded, takes any '%' for one as the text search does); every rule that
    matches a record handed on is among them (the last line comes without literals when none of its hits can
    select a rule)."""
    from exhunt.engine.prefilter import LineHits
    from exhunt.readers import FileFacts
    from exhunt.sources import KINDS, classify_path

    generated = tmp_path / "generated.log"
    if kind == "iis":
        gen_logs.write_iis(generated, 2 << 20, seed=5)
    else:
        gen_logs.write_httpproxy(generated, 2 << 20, attack_every=40, seed=5)
    examples = [p for p in EXAMPLES.rglob("*") if p.is_file() and classify_path(str(p).replace("/", "\\")) == kind]
    rules = shipped_rules()
    # every line holding a literal, not only those whose fields do not rule out the rules it selects
    prefilter, select = Prefilter(rules.prefilter(kind).literals), rules.selector(kind)
    compared = 0
    for path in [generated, *examples]:
        found = LineHits()
        with path.open("rb") as stream:
            lines = prefilter.lines(stream, FileDiagnostics("x"), LineCounts(), found=found)
            for record in KINDS[kind].reader(lines, FileDiagnostics("x"), FileFacts()):
                literals = found.take(record.line)
                assert literals is not None
                picked = select.pick(record, literals)
                assert {r.name for r in select(record.raw.lower()) if r.match(record)} <= {r.name for r in picked}
                if literals:
                    assert picked == select(record.raw.lower()), record.raw
                    compared += 1
    assert examples and compared > 100


def test_iis_lines_whose_fields_rule_out_every_rule_are_skipped(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens rule rules out (piece by piece, or all of a line's fields under the ``#Fields:`` line in force,
    also in a part of a file cut for several processes); the findings are those of parsing every line."""
    import exhunt.scan

    rows = [
        {"cs-uri-stem": "/ecp/", "c-ip": "10.0.0.5"},  # the first data row: always read
        {"cs-uri-stem": "/owa/", "c-ip": "198.51.100.7"},  # a folder: PL-WS-7-base's stem test rules it out
        {"cs-uri-stem": "/owa/x.png", "c-ip": "198.51.100.7", "sc-status": "200"},  # the export hunt's request
        # not ASCII after the stem's token: that token is still the reader's, and decides
        {"cs-uri-stem": "/owa/", "c-ip": "198.51.100.7", "cs(User-Agent)": "Agent/\u00e9"},
        # the stem does not decide; the query (PL-WS-7-base wants none) or the client address does
        {"cs-uri-stem": "/owa/service.svc", "cs-uri-query": "action=GetItem", "c-ip": "198.51.100.7"},
        {"cs-uri-stem": "/owa/service.svc", "c-ip": "10.0.0.5"},
        {"cs-uri-stem": "/owa/caf\u00e9.png", "c-ip": "198.51.100.7"},  # nothing rules it out: read
        {"cs-uri-stem": "/ecp/", "c-ip": "10.0.0.5"},  # the last row: always read
    ]
    host = tmp_path / "HOST"
    path = logfmt.write_iis(host, rows)
    assert _data_candidates(shipped_rules().prefilter("iis"), path) == [0, 2, 6, 7]

    # then the same requests under a header with stem and query swapped (thousands of them: cut into parts)
    names = list(logfmt.IIS_FIELDS)
    names[4:6] = names[5], names[4]
    lines = [" ".join(logfmt.iis_line(row).split(" ")[logfmt.IIS_FIELDS.index(name)] for name in names)
             .replace(".png", f"{copy}.png") for copy in range(500) for row in rows[1:-1]]  # PL-WS-7: <= 2 a file
    with path.open("ab") as out:
        out.write(("#Fields: " + " ".join(names) + "\r\n" + "\r\n".join(lines) + "\r\n").encode())
    monkeypatch.setattr(exhunt.scan, "SPLIT_BYTES", 64 << 10)
    on, off = scan([str(host)], pivot=False, jobs=2), scan([str(host)], pivot=False, prefilter=False)
    assert signature(on) == signature(off)
    assert {f.rule.id for f in on.findings} == {"PL-WS-7"} and len(on.findings) == 2 + 2 * 500


def _header_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().split(b"\r\n") if line.startswith(b"#"))


def _data_candidates(prefilter: Prefilter | None, path: Path) -> list[int]:
    """The data rows (from 0) of a log that ``prefilter`` hands on."""
    assert prefilter is not None
    before = _header_lines(path)
    with path.open("rb") as stream:
        lines = prefilter.lines(stream, FileDiagnostics("x"), LineCounts())
        return [number - before - 1 for number, _ in lines if number > before]


def _iis(stem: str, client: str, second: int) -> str:
    return f"2021-03-03 00:00:{second:02d} 10.0.0.1 GET {stem} - 443 - {client} Mozilla/5.0 - 200 0 0 5"


@pytest.mark.parametrize(("where", "log", "logsource", "detection", "condition"), [
    # a #Fields: line without names: the reader assumes the default fields, so the earlier ones do not hold
    ("C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log",
     "\r\n".join(["#Software: Microsoft Internet Information Services 10.0",
                  "#Fields: " + " ".join((*logfmt.IIS_FIELDS[:2], "c-ip", *logfmt.IIS_FIELDS[3:8], "s-ip",
                                          *logfmt.IIS_FIELDS[9:])),
                  _iis("/first", "10.0.0.2", 0), "#Fields:", _iis("/evilpath", "203.0.113.9", 1),
                  _iis("/last", "10.0.0.2", 2)]),
     "{category: webserver, product: iis}",
     "sel: {cs-uri-stem|contains: '/evilpath'}\n  ip: {c-ip: '203.0.113.9'}", "sel and ip"),
    # a bare CR after the hit's cell: the reader's CSV parser takes the whole line as the first column
    ("Logging/HttpProxy/Owa/HttpProxy_2021030300-1.LOG",
     "#Software: Microsoft Exchange Server\r\n#Log-type: HttpProxy Logs\r\n#Fields: UrlStem,Method,DateTime,Note\r\n"
     "/first,GET,2021-03-03T00:00:00.000Z,a\r\n/evilstem,GET,2021-03-03T00:00:01.000Z,x\ry tail\r\n"
     "/last,GET,2021-03-03T00:00:02.000Z,a",
     "{product: exchange, service: httpproxy}",
     "sel: {UrlStem|contains: '/evilstem'}\n  end: {UrlStem|endswith: 'tail'}", "sel and end"),
    # a cs-user-agent column of its own: the reader keeps its '+' (only cs(User-Agent) writes spaces so)
    ("C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log",
     "#Fields: date time c-ip cs-uri-stem cs-user-agent\r\n2021-03-03 00:00:00 10.0.0.1 /first ok\r\n"
     "2021-03-03 00:00:01 10.0.0.1 /x evil+tool/1.0\r\n2021-03-03 00:00:02 10.0.0.1 /last ok",
     "{category: webserver, product: iis}", "sel: {cs-user-agent|contains: 'evil+tool'}", "sel"),
])
def test_odd_lines_the_prefilter_must_not_skip(tmp_path: Path, where: str, log: str, logsource: str, detection: str,
                                               condition: str) -> None:
    path = tmp_path / "HOST" / where
    path.parent.mkdir(parents=True)
    path.write_bytes((log + "\r\n").encode())
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yml").write_text(_RULE.format(logsource=logsource, detection=detection,
                                                          condition=condition), encoding="utf-8")
    found = {prefilter: [(f.rule.id, f.line) for f in scan([str(tmp_path / "HOST")], pivot=False, prefilter=prefilter,
                                                           rule_dirs=[str(tmp_path / "rules")]).findings
                         if f.rule.id == "EDGE"]
             for prefilter in (False, True)}
    assert found[False] and found[True] == found[False]


def _rows(anchors: list[str]) -> str:
    return "".join(f"2021-03-03T06:00:{n:02d}.000Z,{anchor}\r\n" for n, anchor in enumerate(anchors))


_SSRF = "ServerInfo~a]@x:444/mapi/emsmdb/?#"


@pytest.mark.parametrize("log", [
    # a column-name line of one cell: the reader takes it as the header (none of the rows then fits it)
    ("#Fields: DateTime,AnchorMailbox\r\nDateTime\r\n" + _rows(["Smtp~u@x"] * 4 + [_SSRF])).encode(),
    # a BOM, then the header on the first line (columns not in the default order), and a directive after data
    # lines (later parts are then read with every header line before them, the first one behind the BOM)
    codecs.BOM_UTF8 + ("#Fields: AnchorMailbox,DateTime\r\n" + "Smtp~u@x,2021-03-03T06:00:00.000Z\r\n" * 3
                       + "#Software: x\r\n" + "Smtp~u@x,2021-03-03T06:00:01.000Z\r\n" * 3
                       + f"{_SSRF},2021-03-03T06:00:09.000Z\r\n").encode(),
    # a BOM in front of a later #Fields line: the reader takes that line as data, not as a header
    ("#Fields: DateTime,UrlStem\r\n\ufeff#Fields: DateTime,AnchorMailbox\r\n" + _rows(["/x"] * 4 + [_SSRF])).encode(),
], ids=["one-cell-header", "bom-then-header", "bom-inside"])
def test_parts_of_a_file_read_headers_as_the_reader_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         log: bytes) -> None:
    import exhunt.scan

    path = tmp_path / "HOST" / "Logging" / "HttpProxy" / "Ecp" / "HttpProxy_2021030300-1.LOG"
    path.parent.mkdir(parents=True)
    path.write_bytes(log)

    def found(**options: object) -> list[tuple[str, int | None]]:
        return sorted((f.rule.id, f.line) for f in scan([str(tmp_path / "HOST")], **options).findings)  # type: ignore[arg-type]

    whole, parsed = found(jobs=1), found(jobs=1, prefilter=False)
    monkeypatch.setattr(exhunt.scan, "SPLIT_BYTES", len(log) // 3)
    assert found(jobs=2) == whole == parsed


@pytest.mark.parametrize(("hint", "agent", "rule"), [
    ("X-BEResource-Coo\u212aie", "a", ""),  # KELVIN SIGN: Python lowers it to 'k' (PL-SSRF-3's literal)
    ("", "\u00c9VIL agent", "UserAgent|contains: '\u00e9vil'"),  # a non-ASCII letter in another case
    ("", "\u00dcmlaut/1.0", ""),  # the same non-ASCII agent as an attack line: the pivot pass follows it
])
def test_letters_whose_case_a_byte_search_cannot_fold(tmp_path: Path, hint: str, agent: str, rule: str) -> None:
    path = tmp_path / "HOST" / "Logging" / "HttpProxy" / "Ecp" / "HttpProxy_2021030300-1.LOG"
    path.parent.mkdir(parents=True)
    row = "2021-03-03T06:00:{:02d}.000Z,{},{},{},{}\r\n".format
    path.write_text("#Fields: DateTime,UrlStem,RoutingHint,AnchorMailbox,UserAgent\r\n" + row(0, "/owa/", "", "", "a")
                    + row(1, "/ecp/y.js", "", "ServerInfo~a]@x:444/mapi/emsmdb/?#", "\u00dcmlaut/1.0")
                    + row(2, "/ecp/y.js", hint, "", agent) + row(3, "/owa/", "", "", "a"), encoding="utf-8")
    folders = []
    if rule:
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "r.yml").write_text(_RULE.format(logsource="{product: exchange, service: httpproxy}",
                                                               detection=f"sel: {{{rule}}}", condition="sel"),
                                                  encoding="utf-8")
        folders = [str(tmp_path / "rules")]
    found = {on: sorted((f.rule.id, f.line) for f in scan([str(tmp_path / "HOST")], prefilter=on, rule_dirs=folders)
                        .findings if f.line == 4)
             for on in (False, True)}
    assert found[False] and found[True] == found[False]


class _PiecewisePrefilter(Prefilter):
    """The benign-piece test written plainly (each hit's piece found by searching the whole line): what the
    bookkeeping of :meth:`Prefilter._benign_pieces` must agree with."""

    def _benign_pieces(self, window: bytearray | bytes, begin: int, end: int, hits: list[tuple[int, int]]) -> bool:
        line = bytes(window[begin:end])
        if b"\x00" in line or b"\r" in line:
            return self._benign_split(window, begin, end, hits)
        for ident, to in hits:
            right = line.find(b",", to - begin)
            right = len(line) if right < 0 else right
            if b'"' in line[:right]:
                return self._benign_split(window, begin, end, hits)
            left = line.rfind(b",", 0, to - begin - len(self.literals[ident])) + 1
            if not self._verdict(ident, line[left:right].decode("utf-8", "replace")):
                return False
        return True


def test_the_benign_piece_bookkeeping_agrees_with_searching_each_hit_on_its_own() -> None:
    from exhunt.readers.exchange_csv import split_cells

    rng = random.Random(11)
    literals = ["ab", "b,c", "cab"]  # one holds a separator; hits overlap and repeat within pieces

    def benign(literal: str, piece: str) -> bool:  # a verdict that depends on the whole piece
        return len(piece) % 3 != 0 or literal not in piece.lower()

    lines = ["#Fields: x,y"] + ["".join(rng.choice("aAbBc,,x\"") for _ in range(rng.randrange(1, 60)))
                                for _ in range(3000)]
    data = ("\r\n".join(lines) + "\r\n").encode()
    kept = [[n for n, _ in kind(literals, benign, split_cells).lines(io.BytesIO(data), FileDiagnostics("x"),
                                                                    LineCounts())]
            for kind in (Prefilter, _PiecewisePrefilter)]
    assert kept[0] == kept[1] and 100 < len(kept[0]) < len(lines) - 100


_ATTACKER = "203.0.113.9"


def test_rule_literals_are_found_percent_encoded_and_other_escapes_are_skipped(tmp_path: Path) -> None:
    """A value tested after percent-decoding is found with any character escaped (either case, KELVIN SIGN for
    'k'); lines whose escapes spell no rule literal (ActiveSync's DOMAIN%5Cuser) are not handed on; a '?' in the
    value may be where the line has the space between stem and query."""
    sync = {"cs-uri-stem": "/Microsoft-Server-ActiveSync/default.eas", "c-ip": "10.0.0.5",
            "cs-uri-query": "Cmd=Ping&User=CONTOSO%5Cjdoe&DeviceId=A1&DeviceType=Android"}
    rows = [
        {"cs-uri-stem": "/ecp/", "c-ip": "10.0.0.5"},  # the first data row: always read
        *[sync] * 5,
        {"cs-uri-stem": "/autodiscover/autodiscover%2Ejson", "cs-uri-query": "@x.com/%50owershell", "c-ip": _ATTACKER},
        {"cs-uri-stem": "/EVIL%4bIT", "c-ip": _ATTACKER},
        {"cs-uri-stem": "/evil%E2%84%AAit", "c-ip": _ATTACKER},
        {"cs-uri-stem": "/autodiscover/autodiscover.json", "cs-uri-query": "@x.com/mapi/nspi", "c-ip": _ATTACKER},
        *[sync] * 5,
        {"cs-uri-stem": "/ecp/", "c-ip": "10.0.0.5"},  # the last row: always read
    ]
    host = tmp_path / "HOST"
    path = logfmt.write_iis(host, rows)
    (tmp_path / "rules").mkdir()
    for name, value in (("kit", "'/evilkit'"), ("join", "'autodiscover.json\\?@x'")):
        (tmp_path / "rules" / f"{name}.yml").write_text(_RULE.format(
            logsource="{category: webserver, product: iis}", detection=f"sel: {{cs-uri-decoded|contains: {value}}}",
            condition="sel").replace("name: EDGE", f"name: EDGE-{name}"), encoding="utf-8")
    rules = compile_files([(str(p), p.read_text()) for p in sorted((tmp_path / "rules").iterdir())])
    assert _data_candidates(shipped_rules().prefilter("iis"), path) == [0, 6, 9, 15]  # /autodiscover.json escaped
    assert _data_candidates(rules.prefilter("iis"), path) == [0, 6, 7, 8, 9, 15]
    before = _header_lines(path) + 1
    found = {on: sorted((f.rule.id, f.line - before) for f in scan([str(host)], pivot=False, prefilter=on,
                                                                 rule_dirs=[str(tmp_path / "rules")]).findings
                        if f.line is not None)
             for on in (False, True)}
    assert found[True] == found[False]
    assert {("PS-SSRF-1", 6), ("EDGE-kit", 7), ("EDGE-kit", 8), ("EDGE-join", 9)} <= set(found[True])


def test_every_percent_encoded_form_of_a_literal_is_found() -> None:
    """Random escapes (either case, KELVIN SIGN and CAPITAL I WITH DOT ABOVE for 'k' and 'i') of the literals
    of values tested after percent-decoding: wherever ``unquote`` gives one back, the prefilter finds ENCODED."""
    from urllib.parse import unquote

    literals = ("autodiscover.json", "powershell", "kit", "mi")
    prefilter = Prefilter([ENCODED, "zzz"], encoded=literals)
    ident, rng, checked = prefilter.literals.index(ENCODED), random.Random(7), 0
    escapes = {"k": ["%E2%84%AA", "%e2%84%aa"], "i": ["%C4%B0"]}
    for _ in range(3000):
        chars = []
        for char in rng.choice(literals):
            char = char.upper() if rng.random() < 0.3 else char
            choice = rng.random()
            if choice < 0.3:
                chars.append("%" + ("%02x" if rng.random() < 0.5 else "%02X") % ord(char))
            elif choice < 0.4 and char.lower() in escapes:
                chars.append(rng.choice(escapes[char.lower()]))
            else:
                chars.append(char)
        text = "x%2" + "".join(chars) + "%"
        decoded = unquote(text).lower()
        if not any(literal in decoded for literal in literals):
            continue  # CAPITAL I WITH DOT ABOVE lowers to 'i' and a combining dot: inside a literal, no match
        hits: list[int] = []
        prefilter.database.scan(text.encode(), match_event_handler=lambda found, *_, into=hits: into.append(found))
        assert ident in hits, text
        checked += 1
    assert checked > 2000

"""The Sigma matcher: modifiers, conditions, keywords, correlations and rule diagnostics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exhunt.engine.correlate import BaseMatch, correlate
from exhunt.engine.rules import compile_files
from exhunt.model import Record

RULE = """
title: t
name: T-1
id: 7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a001
logsource: {{product: exchange, service: httpproxy}}
detection:
{detection}
level: high
stage: exploit
"""


def compile_one(detection: str):
    ruleset = compile_files([("t.yml", RULE.format(detection=detection))])
    assert not ruleset.diagnostics, ruleset.diagnostics
    (rule,) = ruleset.rules
    return rule


def rec(raw: str = "", **fields: str) -> Record:
    return Record(1, None, fields, raw or ",".join(fields.values()))


@pytest.mark.parametrize(
    ("detection", "fields", "expected"),
    [
        ("  s: {A|contains: 'bc'}\n  condition: s", {"A": "xBCx"}, True),  # case-insensitive
        ("  s: {A|contains|cased: 'bc'}\n  condition: s", {"A": "xBCx"}, False),
        ("  s: {A|startswith: 'ServerInfo~'}\n  condition: s", {"A": "serverinfo~a]@x"}, True),
        ("  s: {A|startswith: 'ServerInfo~'}\n  condition: s", {"A": "x ServerInfo~"}, False),
        ("  s: {A|endswith: '.aspx'}\n  condition: s", {"A": "/owa/auth/a.ASPX"}, True),
        ("  s: {A: 'exact'}\n  condition: s", {"A": "exact!"}, False),
        ("  s: {A: 'ab*ef'}\n  condition: s", {"A": "abXYZef"}, True),
        ("  s: {A: 'ab?ef'}\n  condition: s", {"A": "abXXef"}, False),
        ("  s: {A|re: '^/ecp/[a-z]\\.js$'}\n  condition: s", {"A": "/ecp/y.js"}, True),
        ("  s: {A|re: '^/ecp/[a-z]\\.js$'}\n  condition: s", {"A": "/ECP/y.js"}, False),  # re is cased
        ("  s: {A|re|i: '^/ecp/[a-z]\\.js$'}\n  condition: s", {"A": "/ECP/Y.js"}, True),
        ("  s: {A|contains|all: ['a', 'z']}\n  condition: s", {"A": "a..z"}, True),
        ("  s: {A|contains|all: ['a', 'z']}\n  condition: s", {"A": "a..."}, False),
        ("  s: {A|cidr: '10.0.0.0/8'}\n  condition: s", {"A": "10.1.2.3"}, True),
        ("  s: {A|cidr: '10.0.0.0/8'}\n  condition: s", {"A": "203.0.113.5"}, False),
        ("  s: {A|cidr: '10.0.0.0/8'}\n  condition: s", {"A": "not-an-ip"}, False),
        ("  s: {A: 241}\n  condition: s", {"A": "241"}, True),
        ("  s: {A: [200, 302]}\n  condition: s", {"A": "404"}, False),
        ("  s: {A: null}\n  condition: s", {"A": ""}, True),
        ("  s: {Missing|contains: 'x'}\n  condition: s", {"A": "x"}, False),
        ("  s: {A: 'x'}\n  f: {B: 'y'}\n  condition: s and not f", {"A": "x", "B": "y"}, False),
        ("  s1: {A: 'x'}\n  s2: {B: 'y'}\n  condition: 1 of s*", {"A": "-", "B": "y"}, True),
        ("  s1: {A: 'x'}\n  s2: {B: 'y'}\n  condition: all of s*", {"A": "-", "B": "y"}, False),
        ("  k: ['ServerInfo~']\n  condition: k", {"A": "zz ServerInfo~a"}, True),
        ("  k: [{'|re': 'Set-.+VirtualDirectory'}]\n  condition: k", {"A": "S:CMD=Set-OabVirtualDirectory"}, True),
    ],
)
def test_modifiers_and_conditions(detection: str, fields: dict[str, str], expected: bool) -> None:
    assert compile_one(detection).match(rec(**fields)) is expected


def test_broken_and_unsupported_rules_are_diagnostics_not_crashes() -> None:
    broken = "title: x\nlogsource: {product: exchange, service: httpproxy}\ndetection: {condition: nothing}\n"
    other_source = RULE.format(detection="  s: {A: 'x'}\n  condition: s").replace(
        "{product: exchange, service: httpproxy}", "{product: linux, service: auditd}")
    bad_yaml = "title: [unclosed\n"
    bad_stage = RULE.format(detection="  s: {UrlStem: 'x'}\n  condition: s").replace("stage: exploit", "stage: owned")
    ruleset = compile_files([("broken.yml", broken), ("other.yml", other_source), ("bad.yml", bad_yaml),
                             ("stage.yml", bad_stage)])
    assert ruleset.rules == ()
    codes = {(d.source, d.code) for d in ruleset.diagnostics}
    assert ("other.yml", "EXH-K003") in codes
    assert ("broken.yml", "EXH-K001") in codes
    assert ("bad.yml", "EXH-K001") in codes
    assert ("stage.yml", "EXH-K002") in codes  # a stage exhunt does not know: the rule is reported, not a crash


def test_a_webserver_rule_with_product_windows_reads_iis_with_its_literals() -> None:
    rule = RULE.format(detection="  s: {cs-uri-stem|contains: '/shell.aspx'}\n  condition: s").replace(
        "{product: exchange, service: httpproxy}", "{category: webserver, product: windows}")
    (compiled,) = compile_files([("w.yml", rule)]).rules
    assert compiled.kind == "iis" and compiled.channels is None and compiled.literals == frozenset({"/shell.aspx"})
    assert compiled.match(Record(1, None, {"cs-uri-stem": "/owa/shell.aspx"}, ""))


CORRELATION = """
title: burst
name: BURST
id: 7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a002
correlation:
  type: value_count
  rules: [BASE]
  group-by: [ip]
  timespan: 10m
  condition: {gte: 3, field: url}
level: medium
stage: probe
---
title: base
name: BASE
id: 7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a003
logsource: {category: webserver}
detection:
  s: {url|endswith: '.aspx'}
  condition: s
"""


def test_value_count_correlation_windows_and_groups() -> None:
    ruleset = compile_files([("c.yml", CORRELATION)])
    assert not ruleset.diagnostics
    (correlation,) = ruleset.correlations
    assert ruleset.rules[0].hidden
    start = datetime(2021, 3, 6, 17, 27, tzinfo=UTC)

    def match(minutes: float, ip: str, url: str) -> BaseMatch:
        record = Record(int(minutes * 10), start + timedelta(minutes=minutes), {"ip": ip, "url": url}, "")
        return BaseMatch("BASE", record, "u_ex.log", "u_ex.log")

    events = [match(0, "a", "/1.aspx"), match(1, "a", "/1.aspx"), match(2, "a", "/2.aspx"),
              match(3, "b", "/3.aspx"), match(4, "a", "/3.aspx"),  # third distinct for 'a' within 10 min
              match(30, "a", "/4.aspx"), match(45, "a", "/5.aspx"), match(50, "a", "/6.aspx")]  # spread out
    findings = correlate(correlation, events, "EXCH02")
    assert len(findings) == 1
    assert findings[0].evidence["ip"] == "a"
    assert findings[0].evidence["distinct_url"] == "3"
    assert findings[0].time == start


USER_RULES = {
    "proc.yml": """
title: Net user from a web server
id: 7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a010
status: test
logsource: {product: windows, category: process_creation}
detection:
  sel:
    ParentImage|endswith: '\\\\cmd.exe'
    CommandLine|contains: 'net  user'
  condition: sel
level: high
""",
    "linux.yml": """
title: Not a Windows source
id: 7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a011
logsource: {product: linux, service: auditd}
detection: {sel: {type: EXECVE}, condition: sel}
level: low
""",
    "placeholder.yml": """
title: Uses a placeholder
id: 7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a012
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|expand: '%admin_tools%'}
  condition: sel
level: low
""",
}


def test_user_rules_are_added_and_unusable_ones_reported(tmp_path, samples) -> None:
    from exhunt.engine.rules import load_rules
    from exhunt.scan import scan

    for name, text in USER_RULES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    ruleset = load_rules([tmp_path])
    codes = {d.source.rsplit("/", 1)[-1]: d.code for d in ruleset.diagnostics}
    assert codes == {"linux.yml": "EXH-K003", "placeholder.yml": "EXH-K002"}
    assert "7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a010" in {r.info.uuid for r in ruleset.rules}
    evtx = samples / "evtx" / "malicious" / "sbousseaden__LM_typical_IIS_webshell_sysmon_1_10_traces.evtx"
    result = scan([str(evtx)], rule_dirs=[tmp_path])
    hits = [f for f in result.findings if f.rule.title == "Net user from a web server"]
    assert len(hits) == 1  # the one Sysmon 1 event cmd.exe -> net.exe "net  user"
    assert hits[0].rule.id == "7c1b43f4-8f64-4d6a-9a68-3f0f2cf2a010"  # no name: the UUID is the id
    assert {d.code for d in result.diagnostics} >= {"EXH-K002", "EXH-K003"}

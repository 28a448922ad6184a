"""The cache of parsed rules and YAML data: cached data behaves as freshly parsed data, and a stale or broken
entry is never used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from exhunt import cache, yamlio
from exhunt.cache import folder
from exhunt.engine.rules import RuleSet, compile_files, shipped_rule_files
from exhunt.engine.sigma import lower_files

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RULE = """
title: Test rule
name: T-1
status: experimental
logsource: {{product: exchange, service: httpproxy}}
detection:
  selection: {{UrlStem|contains: '{needle}'}}
  condition: selection
level: {level}
"""


def described(rules: RuleSet) -> list[object]:
    """What a rule set holds, but for the predicates (a scan compares those)."""
    return [(r.info, r.kind, r.hidden, r.literals, r.channels, r.fields, r.refutes is None) for r in rules.rules] + \
        [(c.info, c.base, c.group_by, c.value_field, c.threshold(5), c.timespan) for c in rules.correlations] + \
        [rules.diagnostics]


def test_the_form_survives_json() -> None:
    form = lower_files(shipped_rule_files())
    assert json.loads(json.dumps(form)) == form
    assert len(form["rules"]) > 50 and form["correlations"]


def test_cached_rules_behave_as_parsed_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXHUNT_CACHE_DIR", str(tmp_path))
    files = shipped_rule_files()
    parsed = described(compile_files(files))
    assert not list(tmp_path.iterdir())  # uncached unless asked (the pivot pass's rules are per scan)
    written = described(compile_files(files, cached=True))
    [entry] = tmp_path.iterdir()
    assert parsed == written == described(compile_files(files, cached=True))

    def scanned(cache: str) -> dict[str, object]:
        out = tmp_path / "result.json"
        subprocess.run([sys.executable, "-m", "exhunt.cli", "scan", str(EXAMPLES), "-q", "--json", str(out)],
                       check=True, env={**os.environ, "EXHUNT_CACHE_DIR": cache})
        document = json.loads(out.read_text(encoding="utf-8"))
        document.pop("run")
        return document

    fresh, cached = scanned(""), scanned(str(tmp_path))
    assert fresh["findings"] and fresh == cached
    assert list(tmp_path.glob("rules-*")) == [entry]


def test_a_second_process_does_not_parse_unchanged_rules(tmp_path: Path) -> None:
    probe = ("import sys; from exhunt.engine.rules import shipped_rules; rules = shipped_rules(); "
             "print(len(rules.rules), 'sigma' in sys.modules)")
    env = {**os.environ, "EXHUNT_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
            for _ in range(2)]
    count = runs[0].split()[0]
    assert runs == [f"{count} True\n", f"{count} False\n"]


def test_changed_rules_are_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXHUNT_CACHE_DIR", str(tmp_path / "cache"))
    first = compile_files([("t.yml", RULE.format(needle="/one.aspx", level="high"))], cached=True)
    second = compile_files([("t.yml", RULE.format(needle="/two.aspx", level="low"))], cached=True)
    assert first.rules[0].literals == frozenset({"/one.aspx"}) and str(first.rules[0].info.level) == "high"
    assert second.rules[0].literals == frozenset({"/two.aspx"}) and str(second.rules[0].info.level) == "low"
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_broken_or_unwritable_caches_only_cost_a_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [("t.yml", RULE.format(needle="/one.aspx", level="high"))]
    monkeypatch.setenv("EXHUNT_CACHE_DIR", str(tmp_path))
    compile_files(files, cached=True)
    [entry] = tmp_path.iterdir()
    damaged = '{"rules": [{"name": "x", "condition": {"op": "all"}}], "correlations": [], "problems": []}'
    for broken in ("{not json", '{"rules": []}', "[]", damaged):
        entry.write_text(broken, encoding="utf-8")
        assert compile_files(files, cached=True).rules[0].literals == frozenset({"/one.aspx"})
        assert json.loads(entry.read_text(encoding="utf-8"))["rules"]  # rewritten

    blocked = tmp_path / "a-file"
    blocked.write_text("", encoding="utf-8")
    monkeypatch.setenv("EXHUNT_CACHE_DIR", str(blocked / "cache"))  # its parent is a file: cannot be made
    assert compile_files(files, cached=True).rules[0].literals == frozenset({"/one.aspx"})

    monkeypatch.setenv("EXHUNT_CACHE_DIR", "")
    assert folder() is None
    assert compile_files(files, cached=True).rules[0].name == "T-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", entry.name]


def test_yaml_data_is_cached_only_when_json_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXHUNT_CACHE_DIR", str(tmp_path))
    text = "a: [1, 'x', 2.5]\nb: {c: null, d: true}\n"
    assert yamlio.load(text, cached=True) == yamlio.load(text) == {"a": [1, "x", 2.5], "b": {"c": None, "d": True}}
    [entry] = tmp_path.iterdir()
    entry.write_text('{"data": {"a": "from the cache"}}', encoding="utf-8")
    assert yamlio.load(text, cached=True) == {"a": "from the cache"}
    assert yamlio.load("when: 2021-03-02\n", cached=True) == {"when": date(2021, 3, 2)}
    assert yamlio.load("1: one\n", cached=True) == {1: "one"}
    assert list(tmp_path.iterdir()) == [entry]


def test_only_the_most_recently_used_entries_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXHUNT_CACHE_DIR", str(tmp_path))
    entries = [cache.entry("t", (), (), [("", str(n))]) for n in range(cache.KEPT + 3)]
    for moment, entry in enumerate(entries):
        cache.write(entry, {"n": moment})
        os.utime(entry, ns=(moment * 10**9, moment * 10**9))
    assert cache.read(entries[0]) is None  # evicted by later writes
    kept = sorted(tmp_path.iterdir())
    assert kept == sorted(entries[3:]) and cache.read(entries[3]) == {"n": 3}
    cache.write(entries[0], {"n": 0})  # entries[3] was just read: entries[4] is now the least recently used
    assert entries[4] not in set(tmp_path.iterdir()) and {entries[0], entries[3]} <= set(tmp_path.iterdir())


def test_without_a_home_there_is_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EXHUNT_CACHE_DIR", "XDG_CACHE_HOME", "HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # what it does when no home is known
    assert folder() is None
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert folder() is None
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/responder")
    assert folder() == Path("/var/cache/responder/exhunt")


def test_entries_change_with_a_library_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    site = tmp_path / "site"
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("", encoding="utf-8")
    (site / "fake_pkg_extra-9.0.dist-info").mkdir()  # another distribution whose name starts alike
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setenv("EXHUNT_CACHE_DIR", str(tmp_path / "cache"))
    names = []
    for version in ("1.0", "2.0"):
        (site / f"fake_pkg-{version}.dist-info").mkdir()
        assert cache._installed("fakepkg", "Fake.Pkg") == f"fake_pkg-{version}.dist-info"
        names.append(cache.entry("t", (), (("fakepkg", "Fake.Pkg"),), [("r", "text")]))
        (site / f"fake_pkg-{version}.dist-info").rmdir()
    assert names[0] != names[1]
    assert cache._installed("fakepkg", "Fake.Pkg") == "Fake.Pkg unknown"


def test_the_cache_keeps_to_its_own_files_and_survives_a_read_only_folder(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXHUNT_CACHE_DIR", str(tmp_path))
    theirs = tmp_path / "rules-notes.json"
    theirs.write_text("{}", encoding="utf-8")
    old, fresh = tmp_path / "t-killed.tmp", tmp_path / "t-writing.tmp"
    for leftover in (old, fresh):
        leftover.write_text("", encoding="utf-8")
    os.utime(old, (0, 0))  # left by a process killed between writing and renaming, long ago
    for n in range(cache.KEPT + 2):
        cache.write(cache.entry("t", (), (), [("", str(n))]), {"n": n})
    assert theirs.exists() and fresh.exists() and not old.exists()
    entry = cache.entry("t", (), (), [("", str(cache.KEPT + 1))])

    def refused(*_: object, **__: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(os, "utime", refused)
    assert cache.read(entry) == {"n": cache.KEPT + 1}
    monkeypatch.setenv("EXHUNT_CACHE_DIR", "relative/cache")
    assert folder() is None

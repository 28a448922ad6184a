"""Load Sigma rule files (shipped and user-supplied) into a compiled rule set.

A file that pySigma cannot parse, or a rule the matcher cannot evaluate, becomes a
diagnostic naming the file and the reason; the other rules are still loaded. The rule form of
a set of files (:mod:`exhunt.engine.sigma`) is cached (:mod:`exhunt.cache`): a scan with unchanged
rules neither imports pySigma nor parses YAML.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from exhunt import cache
from exhunt.diagnostics import make
from exhunt.engine.literals import CELLS, ENCODED
from exhunt.engine.matcher import (
    CompiledCorrelation,
    CompiledRule,
    Form,
    UnsupportedRule,
    admits,
    compile_correlation,
    compile_rule,
)
from exhunt.engine.prefilter import Prefilter
from exhunt.model import Diagnostic, Record, RuleInfo
from exhunt.readers import w3c
from exhunt.readers.exchange_csv import split_cells


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Compiled rules by source kind, correlations, and the problems met while loading."""

    rules: tuple[CompiledRule, ...]
    correlations: tuple[CompiledCorrelation, ...]
    diagnostics: tuple[Diagnostic, ...]
    _prefilters: dict[str, Prefilter | None] = field(default_factory=dict, compare=False, repr=False)
    _selectors: dict[str, RuleSelector] = field(default_factory=dict, compare=False, repr=False)

    def for_kind(self, kind: str) -> tuple[CompiledRule, ...]:
        return tuple(rule for rule in self.rules if rule.kind == kind)

    def selector(self, kind: str) -> RuleSelector:
        """Picks, for one raw line, the rules of ``kind`` whose literals it holds."""
        if kind not in self._selectors:
            self._selectors[kind] = RuleSelector(self.for_kind(kind))
        return self._selectors[kind]

    def prefilter(self, kind: str) -> Prefilter | None:
        """The literal prefilter of a text source kind; ``None`` when a rule has no provable literal."""
        if kind not in self._prefilters:
            rules = self.for_kind(kind)
            literal_sets = [rule.literals for rule in rules]
            provable = all(lits is not None for lits in literal_sets)
            pieces = CELLS.get(kind)
            benign = _benign_cells(rules) if pieces else None
            splitter = split_cells if pieces == b"," else None
            header, values = _LINE_FIELDS.get(kind, (None, None))
            judge = _benign_lines(self.selector(kind), values) if values else None
            encoded = {lit for lits in literal_sets if lits and ENCODED in lits for lit in lits} - {ENCODED}
            self._prefilters[kind] = (Prefilter(frozenset().union(*literal_sets), benign, splitter, pieces or b",",
                                                header, judge, encoded)
                                      if provable else None)
        return self._prefilters[kind]

    @property
    def infos(self) -> tuple[RuleInfo, ...]:
        visible = [r.info for r in self.rules if not r.hidden] + [c.info for c in self.correlations]
        return tuple(sorted(visible, key=lambda info: info.id))

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(rule.kind for rule in self.rules)


class RuleSelector:
    """The rules a line can match: those without literals, and those whose literal it contains.

    A rule whose literals are all absent from the lowered line cannot match, so it is not
    evaluated; the rest keep their order.
    """

    def __init__(self, rules: tuple[CompiledRule, ...]) -> None:
        self.rules = rules
        self.literals = tuple(sorted({lit for rule in rules for lit in rule.literals or ()}))
        self._by_found: dict[tuple[str, ...], _Picks] = {}
        #: Whether the rules are picked by channel and event ID (event logs).
        self.gated = bool(rules) and all(rule.channels is not None for rule in rules)
        self._by_event: dict[tuple[str, str], list[CompiledRule]] = {}
        self._refused: dict[tuple[tuple[str, ...], frozenset[str]], frozenset[str]] = {}

    def pick(self, record: Record, literals: tuple[str, ...] | None) -> list[CompiledRule]:
        """The rules worth evaluating on ``record``: for event logs those whose channel and event ID it has,
        else those whose literals the prefilter found in it (``literals``) or, unknown, the line holds."""
        if self.gated:
            return self.event(record.fields.get("Channel", ""), record.fields.get("EventID", ""))
        if literals is not None:
            return self.found(literals, record.raw)
        return self(record.raw.lower())

    def admits(self, channel: str, event_id: str) -> bool:
        """Whether a rule may match an event of ``channel`` with ``event_id``."""
        return bool(self.event(channel, event_id))

    def event(self, channel: str, event_id: str) -> list[CompiledRule]:
        """The event-log rules that admit an event of ``channel`` with ``event_id`` (cached)."""
        key = (channel, event_id)
        rules = self._by_event.get(key)
        if rules is None:
            rules = [rule for rule in self.rules if admits(rule.channels or {}, channel, event_id)]
            if len(self._by_event) < 4096:
                self._by_event[key] = rules
        return rules

    def __call__(self, lowered: str) -> list[CompiledRule]:
        present = {literal for literal in self.literals if literal in lowered}
        if "%" in lowered:
            present.add(ENCODED)  # some literal may be in the line percent-encoded
        return [rule for rule in self.rules if rule.literals is None or not rule.literals.isdisjoint(present)]

    def found(self, literals: tuple[str, ...], raw: str) -> list[CompiledRule]:
        """The same, from the prefilter literals found in the line ``raw``: a rule one of whose literals
        was found is taken as it is; one whose literals only hold a found one is checked on the line."""
        picks = self._picks(literals)
        if not picks.needles:
            return picks.sure
        lowered = raw.lower()
        present = [needle for needle in picks.needles if needle in lowered]
        if not present:
            return picks.sure
        return [rule for rule, needles in picks.entries if not needles or any(n in present for n in needles)]

    def refused(self, literals: tuple[str, ...], done: frozenset[str]) -> frozenset[str]:
        """Those of ``literals`` that select only rules in ``done`` (rule ids; cached per ``done``)."""
        key = (literals, done)
        found = self._refused.get(key)
        if found is None:
            found = frozenset(literal for literal in literals
                              if all(rule.info.id in done for rule in self.possible((literal,))))
            if len(self._refused) < 256:
                self._refused[key] = found
        return found

    def possible(self, literals: tuple[str, ...]) -> list[CompiledRule]:
        """Every rule :meth:`found` may pick for a line holding these prefilter literals."""
        return [rule for rule, _ in self._picks(literals).entries]

    def _picks(self, literals: tuple[str, ...]) -> _Picks:
        picks = self._by_found.get(literals)
        if picks is None:
            picks = _Picks.of(self.rules, literals)
            if len(self._by_found) < 4096:
                self._by_found[literals] = picks
        return picks


@dataclass(frozen=True, slots=True)
class _Picks:
    """The rules a set of found prefilter literals selects: ``sure`` ones, and ones that need one of their
    longer literals (``needles``) on the line."""

    entries: tuple[tuple[CompiledRule, tuple[str, ...]], ...]
    sure: list[CompiledRule]
    needles: tuple[str, ...]

    @classmethod
    def of(cls, rules: tuple[CompiledRule, ...], literals: tuple[str, ...]) -> _Picks:
        entries = []
        for rule in rules:
            if rule.literals is None or not rule.literals.isdisjoint(literals):
                entries.append((rule, ()))
            elif needles := tuple(own for own in rule.literals if any(lit in own for lit in literals)):
                entries.append((rule, needles))
        sure = [rule for rule, needles in entries if not needles]
        return cls(tuple(entries), sure, tuple(sorted({n for _, needles in entries for n in needles})))


def _benign_cells(rules: tuple[CompiledRule, ...]) -> Callable[[str, str], bool]:
    """Whether a piece of a line (a cell, a token) holding a literal rules out every rule that the literal
    selects there: those with the literal itself, or with a longer one holding it that the piece holds too
    (a rule's literal lies within one field's piece, where the prefilter finds the shorter literal)."""

    def benign(literal: str, piece: str) -> bool:
        lowered = piece.lower()
        for rule in rules:
            owns = [own for own in rule.literals or () if literal in own]
            if not owns or not any(own == literal or own in lowered for own in owns):
                continue
            if rule.refutes is None or not rule.refutes(piece):
                return False
        return True

    return benign


#: Readers that tell the prefilter a line's fields: the names a header line sets, and a line's values.
_LINE_FIELDS = {"iis": (w3c.header_fields, w3c.line_values)}


def _benign_lines(selector: RuleSelector, values_of: Callable[[tuple[str, ...], str], Mapping[str, str] | None]
                  ) -> Callable[[tuple[str, ...], tuple[str, ...], str], bool]:
    """Whether a line with these prefilter literals and field names has values, as its reader gives them, that
    refute every rule those literals select (each through a condition on one field)."""

    def benign(literals: tuple[str, ...], fields: tuple[str, ...], line: str) -> bool:
        values = values_of(fields, line)
        if values is None:
            return False
        record = Record(0, None, values, "")
        return all(rule.refuted is not None and rule.refuted(record) for rule in selector.found(literals, line))

    return benign


def shipped_rule_files() -> list[tuple[str, str]]:
    """``(name, text)`` of every Sigma file shipped in the package, sorted by name."""
    folder = resources.files("exhunt") / "rules" / "sigma"
    return sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith((".yml", ".yaml"))
    )


@functools.cache
def shipped_rules() -> RuleSet:
    """The rules exhunt ships, compiled once per process."""
    return compile_files(shipped_rule_files(), cached=True)


def load_rules(extra_dirs: Sequence[str | Path] = ()) -> RuleSet:
    """Shipped rules plus every ``*.yml``/``*.yaml`` below the given folders."""
    base = shipped_rules()
    if not extra_dirs:
        return base
    files: list[tuple[str, str]] = []
    problems: list[Diagnostic] = []
    for folder in extra_dirs:
        paths = sorted(Path(folder).rglob("*.y*ml")) if Path(folder).is_dir() else [Path(folder)]
        for path in paths:
            try:
                files.append((str(path), path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(make("EXH-K001", f"cannot read rule file: {exc}", str(path)))
    extra = compile_files(files, cached=True)
    return RuleSet(base.rules + extra.rules, base.correlations + extra.correlations,
                   base.diagnostics + tuple(problems) + extra.diagnostics)


def compile_files(files: Iterable[tuple[str, str]], cached: bool = False) -> RuleSet:
    """Parse and compile Sigma files given as ``(path, text)``; with ``cached``, through the form cache."""
    files = list(files)
    entry = cache.entry("rules", _LOWERING, _PARSERS, files) if cached else None
    stored = cache.read(entry) if entry else None
    if isinstance(stored, dict):
        try:
            return compile_form(stored)
        except Exception:  # an entry damaged by hand, whatever it holds: the files are parsed again
            pass
    from exhunt.engine.sigma import lower_files  # pySigma: only for files not seen before

    form = lower_files(files)
    if entry:
        cache.write(entry, form)
    return compile_form(form)


#: The modules whose code decides a file's form, and the libraries that parse it (import and distribution names).
_LOWERING = ("engine/sigma.py", "engine/taxonomy.py", "yamlio.py")
_PARSERS = (("sigma", "pysigma"), ("yaml", "PyYAML"), ("pyparsing", "pyparsing"))


def compile_form(form: Form) -> RuleSet:
    """Compile the rule form of a set of files (see :func:`exhunt.engine.sigma.lower_files`)."""
    rules: list[CompiledRule] = []
    problems = [make(code, message, source) for code, message, source in form["problems"]]
    for rule in form["rules"]:
        try:
            rules.append(compile_rule(rule))
        except UnsupportedRule as exc:
            problems.append(make("EXH-K002", f"{rule['name']}: {exc}", rule["info"]["path"]))
    by_name = {rule.name: rule for rule in rules}
    correlations: list[CompiledCorrelation] = []
    hidden: set[str] = set()
    for item in form["correlations"]:
        try:
            compiled = compile_correlation(item, by_name)
        except UnsupportedRule as exc:
            problems.append(make("EXH-K002", f"{item['info']['id']}: {exc}", item["info"]["path"]))
            continue
        correlations.append(compiled)
        if not item["generate"]:
            hidden.update(compiled.base)
    rules = [_hide(rule) if rule.name in hidden else rule for rule in rules]
    return RuleSet(tuple(rules), tuple(correlations), tuple(problems))


def _hide(rule: CompiledRule) -> CompiledRule:
    return replace(rule, hidden=True)

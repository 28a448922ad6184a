"""Compile Sigma rules (parsed and validated by pySigma) into predicates over records.

pySigma resolves modifiers (``contains``, ``startswith``, ``endswith``, ``all``, ``re``,
``cidr``, wildcards) and the condition (``1 of``, ``all of``, ``not``) into a tree of
typed values; this module turns that tree into plain Python closures. Strings compare
case-insensitively, as the Sigma specification requires, unless ``|cased`` is used.
Keyword (field-less) values are searched in the raw log line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule
from sigma.rule import SigmaLogSource, SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from exhunt.engine.literals import JOINED_FIELDS, cell_value, literal_fields, required
from exhunt.engine.taxonomy import windows_channels
from exhunt.model import FindingStage, Level, Record, RuleInfo

Predicate = Callable[[Record], bool]
ValueTest = Callable[[str], bool]


class UnsupportedRule(Exception):
    """A rule uses a Sigma feature the matcher cannot evaluate."""


#: ``product: exchange`` services: exhunt's own taxonomy for Exchange's text logs, each named as the source
#: kind it reads (``category: webserver`` is SigmaHQ's for IIS).
EXCHANGE_SERVICES = frozenset({"httpproxy", "ecp-server", "ecp-activity", "oabgenerator", "rps-http"})


def source_kind(logsource: SigmaLogSource) -> str | None:
    """The evidence kind a rule's logsource selects, or ``None`` if exhunt reads no such source."""
    if logsource.category == "webserver" and logsource.product in (None, "iis", "windows"):
        return "iis"
    if logsource.product == "exchange" and logsource.category is None:
        return logsource.service if logsource.service in EXCHANGE_SERVICES else None
    if logsource.product == "windows" and windows_channels(logsource.service, logsource.category):
        return "evtx"
    return None


#: Event-log channels a rule reads, each with its event IDs (``None``: any).
Channels = dict[str, frozenset[int] | None]


def admits(channels: Channels, channel: str, event_id: str) -> bool:
    """Whether an event of ``channel`` with ``event_id`` is one that a rule reading ``channels`` may match."""
    ids = channels.get(channel, False)
    if ids is False:
        return False
    return ids is None or _int(event_id) in ids


def _channels(logsource: SigmaLogSource) -> Channels | None:
    """For event-log rules: the channels and event IDs the logsource implies."""
    if logsource.product != "windows":
        return None
    return windows_channels(logsource.service, logsource.category) or {}


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A single-event rule ready to evaluate; ``hidden`` rules only feed correlations."""

    info: RuleInfo
    kind: str
    match: Predicate
    fields: tuple[str, ...]
    name: str
    hidden: bool = False
    #: Literals one of which every matching raw line holds (``None``: not provable; see literals.py).
    literals: frozenset[str] | None = None
    #: Whether one field holding this value, whichever field it is, rules the rule out (``None``: the
    #: rule reads the raw line, so a value cannot tell).
    refutes: Callable[[str], bool] | None = None
    #: For event-log rules: the events the logsource admits (tested first by ``match`` too).
    channels: Channels | None = None


@dataclass(frozen=True, slots=True)
class CompiledCorrelation:
    """An ``event_count`` or ``value_count`` correlation over hidden base rules."""

    info: RuleInfo
    kind: str
    base: tuple[str, ...]
    type: str
    group_by: tuple[str, ...]
    timespan: timedelta
    threshold: Callable[[int], bool]
    value_field: str | None
    #: The condition is an upper bound or an exact count (``lt``, ``lte``, ``eq``, ``neq``): it is judged on
    #: whole windows, not on windows still growing.
    whole_windows: bool = False


def rule_info(rule: SigmaRule | SigmaCorrelationRule, path: str = "") -> RuleInfo:
    """Extract exhunt's finding metadata from a Sigma rule."""
    tags = rule.tags or []
    cves = tuple(f"CVE-{t.name.upper()}" for t in tags if t.namespace == "cve")
    attack = tuple(t.name.upper() for t in tags if t.namespace == "attack" and t.name.lower().startswith("t"))
    stage_text = str(rule.custom_attributes.get("stage", "probe"))
    level = Level.parse(rule.level.name) if rule.level else Level.MEDIUM
    return RuleInfo(
        id=rule.name or str(rule.id),
        title=rule.title,
        level=level,
        stage=FindingStage(stage_text),
        cves=cves,
        attack=attack,
        references=tuple(rule.references or ()),
        falsepositives=tuple(rule.falsepositives or ()),
        description=(rule.description or "").strip(),
        uuid=str(rule.id) if rule.id else "",
        path=path,
    )


def compile_rule(rule: SigmaRule, path: str = "") -> CompiledRule:
    """Compile one Sigma rule; raises :class:`UnsupportedRule` with the reason."""
    kind = source_kind(rule.logsource)
    if kind is None:
        raise UnsupportedRule(f"logsource {_logsource_text(rule.logsource)} is not a source exhunt reads")
    conditions = rule.detection.parsed_condition
    if len(conditions) != 1:
        raise UnsupportedRule("rules with several conditions are not supported")
    tree = conditions[0].parse()
    predicate = _compile_node(tree)
    channels = _channels(rule.logsource)
    if channels is not None:
        detection = predicate
        predicate = lambda record: (admits(channels, record.fields.get("Channel", ""),  # noqa: E731
                                           record.fields.get("EventID", "")) and detection(record))
    return CompiledRule(
        info=rule_info(rule, path),
        kind=kind,
        match=predicate,
        fields=tuple(rule.fields or ()),
        name=rule.name or str(rule.id),
        literals=None if channels is not None else required(tree, kind),
        refutes=None if channels is not None else _refuter(tree, kind),
        channels=channels,
    )


def _refuter(tree: object, kind: str) -> Callable[[str], bool] | None:
    """For a rule whose literals come from tests of named fields: a test of whether one piece of a line (a
    CSV cell, an IIS token), made the value of any one of those fields, makes one of the rule's top-level
    conjuncts that read only that field false.

    A line the rule matches holds one of its literals in one of those fields' values, that is, in that
    field's piece; so if every occurrence of the literals lies in a piece that refutes the rule, it cannot
    match the line.
    """
    names = literal_fields(tree, kind)
    if names is None or names & JOINED_FIELDS:
        return None
    conjuncts = list(_conjuncts(tree))
    deciders = {name: tuple(_compile_node(c) for c in conjuncts if _field_names(c) == {name}) for name in names}
    if not all(deciders.values()):
        return None

    def refutes(piece: str) -> bool:
        for name, tests in deciders.items():
            value = cell_value(kind, name, piece)
            record = Record(0, None, {name: value}, value)
            if all(test(record) for test in tests):
                return False
        return True

    return refutes


def _conjuncts(node: object) -> Iterator[object]:
    if isinstance(node, ConditionAND):
        for arg in node.args:
            yield from _conjuncts(arg)
    else:
        yield node


def _field_names(node: object) -> set[str] | None:
    """The fields a condition reads; ``None`` if it reads the raw line."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return {node.field}
    if isinstance(node, (ConditionAND, ConditionOR, ConditionNOT)):
        names: set[str] = set()
        for arg in node.args:
            found = _field_names(arg)
            if found is None:
                return None
            names |= found
        return names
    return None


def compile_correlation(rule: SigmaCorrelationRule, bases: dict[str, CompiledRule],
                        path: str = "") -> CompiledCorrelation:
    """Compile a correlation rule whose base rules are already compiled."""
    kind_name = rule.type.name.lower()
    if kind_name not in ("event_count", "value_count"):
        raise UnsupportedRule(f"correlation type {kind_name} is not supported")
    names = []
    for ref in rule.rules:
        target = ref.rule
        name = (target.name or str(target.id)) if target is not None else str(ref.reference)
        if name not in bases:
            raise UnsupportedRule(f"correlation refers to unknown or unsupported rule {name}")
        names.append(name)
    kinds = {bases[name].kind for name in names}
    if len(kinds) != 1:
        raise UnsupportedRule("correlated rules must read the same source kind")
    condition = rule.condition
    return CompiledCorrelation(
        info=rule_info(rule, path),
        kind=kinds.pop(),
        base=tuple(names),
        type=kind_name,
        group_by=tuple(rule.group_by or ()),
        timespan=timedelta(seconds=rule.timespan.seconds),
        threshold=_threshold(condition.op, condition.count),
        value_field=condition.fieldref if kind_name == "value_count" else None,
        whole_windows=condition.op.name in ("LT", "LTE", "EQ", "NEQ"),
    )


def _threshold(op: SigmaCorrelationConditionOperator, count: int | float) -> Callable[[int], bool]:
    tests: dict[str, Callable[[int], bool]] = {
        "LT": lambda n: n < count,
        "LTE": lambda n: n <= count,
        "GT": lambda n: n > count,
        "GTE": lambda n: n >= count,
        "EQ": lambda n: n == count,
        "NEQ": lambda n: n != count,
    }
    try:
        return tests[op.name]
    except KeyError:
        raise UnsupportedRule(f"correlation operator {op.name} is not supported") from None


def _logsource_text(logsource: SigmaLogSource) -> str:
    parts = (f"{key}: {value}" for key, value in (("product", logsource.product),
                                                  ("category", logsource.category),
                                                  ("service", logsource.service)) if value)
    return "{" + ", ".join(parts) + "}"


def _compile_node(node: object) -> Predicate:
    if isinstance(node, ConditionAND):
        return _all(tuple(_compile_node(arg) for arg in node.args))
    if isinstance(node, ConditionOR):
        return _any(_merged_strings(node.args) + tuple(_compile_node(arg) for arg in node.args
                                                       if _string_shape(arg) is None))
    if isinstance(node, ConditionNOT):
        inner = _compile_node(node.args[0])
        return lambda record: not inner(record)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _field_predicate(node.field, node.value)
    if isinstance(node, ConditionValueExpression):
        test = _value_test(node.value, keyword=True)
        return lambda record: test(record.raw)
    raise UnsupportedRule(f"condition element {type(node).__name__} is not supported")


def _all(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 2:
        first, second = parts
        return lambda record: first(record) and second(record)

    def every(record: Record) -> bool:
        for part in parts:  # noqa: SIM110 (a loop is cheaper than all() over a generator, per line)
            if not part(record):
                return False
        return True

    return every


def _any(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 1:
        return parts[0]

    def some(record: Record) -> bool:
        for part in parts:  # noqa: SIM110 (a loop is cheaper than any() over a generator, per line)
            if part(record):
                return True
        return False

    return some


def _merged_strings(args: object) -> tuple[Predicate, ...]:
    """One predicate per field for the OR-ed case-insensitive string tests on it (``endswith: [a, b]``),
    which lowers the field once and tests every value in one call per kind of test."""
    by_field: dict[str, dict[str, list[str]]] = {}
    for arg in args:  # type: ignore[attr-defined]
        shape = _string_shape(arg)
        if shape is not None:
            by_field.setdefault(arg.field, {}).setdefault(shape[0], []).append(shape[1])
    return tuple(_field_strings(name, shapes) for name, shapes in by_field.items())


def _field_strings(name: str, shapes: dict[str, list[str]]) -> Predicate:
    equals = frozenset(shapes.get("equals", ()))
    prefixes, suffixes = tuple(shapes.get("startswith", ())), tuple(shapes.get("endswith", ()))
    needles = tuple(shapes.get("contains", ()))

    def predicate(record: Record) -> bool:
        found = record.fields.get(name)
        if found is None:
            return False
        lowered = found.lower()
        return (lowered in equals or lowered.startswith(prefixes) or lowered.endswith(suffixes)
                or any(needle in lowered for needle in needles))

    return predicate


def _string_shape(node: object) -> tuple[str, str] | None:
    """``(test, lowered literal)`` of a case-insensitive field test that is an equality, ``contains``,
    ``startswith`` or ``endswith``; ``None`` for anything else."""
    if not isinstance(node, ConditionFieldEqualsValueExpression) or not isinstance(node.value, SigmaString):
        return None
    if isinstance(node.value, SigmaCasedString):
        return None
    return _shape(_trimmed(list(node.value.s)), str.lower)


def _trimmed(parts: list[str | SpecialChars]) -> list[str | SpecialChars]:
    """Wildcard parts without repeated ``*`` at either end."""
    star = SpecialChars.WILDCARD_MULTI
    while len(parts) > 1 and parts[0] is star and parts[1] is star:
        parts.pop(0)
    while len(parts) > 1 and parts[-1] is star and parts[-2] is star:
        parts.pop()
    return parts


def _shape(parts: list[str | SpecialChars], fold: Callable[[str], str]) -> tuple[str, str] | None:
    star = SpecialChars.WILDCARD_MULTI
    if all(isinstance(p, str) for p in parts):
        return "equals", fold("".join(str(p) for p in parts))
    if len(parts) == 3 and parts[0] is star and parts[2] is star and isinstance(parts[1], str):
        return "contains", fold(parts[1])
    if len(parts) == 2 and isinstance(parts[0], str) and parts[1] is star:
        return "startswith", fold(parts[0])
    if len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
        return "endswith", fold(parts[1])
    return None


def _field_predicate(name: str, value: object) -> Predicate:
    if isinstance(value, SigmaNull):
        return lambda record: not record.fields.get(name)
    if isinstance(value, SigmaExists):
        wanted = value.exists
        return lambda record: (name in record.fields) == wanted
    test = _value_test(value, keyword=False)

    def predicate(record: Record) -> bool:
        found = record.fields.get(name)
        return found is not None and test(found)

    return predicate


def _value_test(value: object, keyword: bool) -> ValueTest:
    if isinstance(value, SigmaString):
        return _string_test(value, keyword)
    if isinstance(value, SigmaNumber):
        return _number_test(value.number)
    if isinstance(value, SigmaBool):
        expected = "true" if value.boolean else "false"
        return lambda found: found.strip().lower() == expected
    if isinstance(value, SigmaRegularExpression):
        return _regex_test(value)
    if isinstance(value, SigmaCIDRExpression):
        return _cidr_test(value.network)
    if isinstance(value, SigmaCompareExpression):
        return _compare_test(value)
    raise UnsupportedRule(f"value type {type(value).__name__} is not supported")


def _string_test(value: SigmaString, keyword: bool) -> ValueTest:
    parts = list(value.s)
    if keyword:
        parts = [SpecialChars.WILDCARD_MULTI, *parts, SpecialChars.WILDCARD_MULTI]
    cased = isinstance(value, SigmaCasedString)
    fold: Callable[[str], str] = (lambda text: text) if cased else str.lower
    parts = _trimmed(parts)
    shape = _shape(parts, fold)
    if shape is None:
        pattern = re.compile(_wildcard_regex(parts), 0 if cased else re.IGNORECASE | re.DOTALL)
        return lambda found: pattern.fullmatch(found) is not None
    test, literal = shape
    if test == "equals":
        return lambda found: fold(found) == literal
    if test == "contains":
        return lambda found: literal in fold(found)
    if test == "startswith":
        return lambda found: fold(found).startswith(literal)
    return lambda found: fold(found).endswith(literal)


def _wildcard_regex(parts: list[str | SpecialChars]) -> str:
    out = []
    for part in parts:
        if part is SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part is SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        elif isinstance(part, str):
            out.append(re.escape(part))
        else:
            raise UnsupportedRule(f"special value {part!r} (placeholder or expansion) is not supported")
    return "".join(out)


def _number_test(number: int | float) -> ValueTest:
    def test(found: str) -> bool:
        try:
            return float(found) == number
        except ValueError:
            return False

    return test


def _regex_test(value: SigmaRegularExpression) -> ValueTest:
    flags = 0
    for flag in value.flags:
        flags |= {
            SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
            SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
            SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
        }[flag]
    pattern = re.compile(value.regexp.to_plain(), flags)
    return lambda found: pattern.search(found) is not None


def _cidr_test(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ValueTest:
    def test(found: str) -> bool:
        try:
            address = ipaddress.ip_address(found.strip().strip("[]"))
        except ValueError:
            return False
        return address.version == network.version and address in network

    return test


def _compare_test(value: SigmaCompareExpression) -> ValueTest:
    ops: dict[str, Callable[[float, float], bool]] = {
        "LT": lambda a, b: a < b,
        "LTE": lambda a, b: a <= b,
        "GT": lambda a, b: a > b,
        "GTE": lambda a, b: a >= b,
    }
    compare = ops[value.op.name]
    limit = float(value.number.number)

    def test(found: str) -> bool:
        try:
            return compare(float(found), limit)
        except ValueError:
            return False

    return test

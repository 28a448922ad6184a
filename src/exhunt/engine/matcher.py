"""Compile rules in exhunt's rule form (written by :mod:`exhunt.engine.sigma`) into predicates over records.

The form is plain JSON data. A rule is ``{"name", "kind", "info", "fields", "condition", "channels"}``;
a condition node is ``{"op": "all"|"any", "args": [...]}``, ``{"op": "not", "args": [node]}``,
``{"op": "field", "field": name, "value": value}`` or ``{"op": "keyword", "value": value}`` (searched in
the raw line); a value is ``{"type": "string", "parts": [text or {"wildcard": "*"|"?"}], "cased": bool}``,
``number``, ``bool``, ``regex`` (with ``flags`` from ``ims``), ``cidr``, ``compare``, ``null`` or ``exists``.
Strings compare case-insensitively, as the Sigma specification requires, unless ``cased``.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from exhunt.engine.literals import JOINED_FIELDS, cell_values, required
from exhunt.model import FindingStage, Level, Record, RuleInfo

Predicate = Callable[[Record], bool]
ValueTest = Callable[[str], bool]
#: A rule, correlation, condition node or value in the rule form.
Form = dict[str, Any]


class UnsupportedRule(Exception):
    """A rule uses a Sigma feature the matcher cannot evaluate."""


#: Event-log channels a rule reads, each with its event IDs (``None``: any).
Channels = dict[str, frozenset[int] | None]


def admits(channels: Channels, channel: str, event_id: str) -> bool:
    """Whether an event of ``channel`` with ``event_id`` is one that a rule reading ``channels`` may match."""
    ids = channels.get(channel, False)
    if ids is False:
        return False
    return ids is None or _int(event_id) in ids


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
    #: Whether a line whose record holds these field values (all of them, as its reader gives them) cannot match
    #: (``None``: no condition of the rule reads one field alone).
    refuted: Callable[[Record], bool] | None = None


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


def rule_info(form: Form) -> RuleInfo:
    """The :class:`RuleInfo` of a rule's ``info`` form."""
    return RuleInfo(
        id=form["id"], title=form["title"], level=Level.parse(form["level"]), stage=FindingStage(form["stage"]),
        cves=tuple(form["cves"]), attack=tuple(form["attack"]), references=tuple(form["references"]),
        falsepositives=tuple(form["falsepositives"]), description=form["description"], uuid=form["uuid"],
        path=form["path"],
    )


def compile_rule(form: Form) -> CompiledRule:
    """Compile one single-event rule; raises :class:`UnsupportedRule` with the reason."""
    tree, kind = form["condition"], form["kind"]
    detection = _compile_node(tree)
    info, fields, name = rule_info(form["info"]), tuple(form["fields"]), form["name"]
    if form["channels"] is not None:  # an event-log rule: gated by channel and event ID, no text prefilter
        channels = _narrowed({channel: frozenset(ids) if ids is not None else None
                              for channel, ids in form["channels"].items()}, _event_ids(tree))

        def gated(record: Record) -> bool:
            fields_of = record.fields
            return admits(channels, fields_of.get("Channel", ""), fields_of.get("EventID", "")) and detection(record)

        return CompiledRule(info, kind, gated, fields, name, channels=channels)
    single = _single_field_tests(tree)
    literals, names = required(tree, kind)
    return CompiledRule(info, kind, detection, fields, name, literals=literals, refutes=_refuter(kind, single, names),
                        refuted=_line_refuter(single, names or frozenset()))


def _narrowed(channels: Channels, ids: frozenset[int] | None) -> Channels:
    """``channels`` admitting only ``ids`` too (``None``: any)."""
    if ids is None:
        return channels
    return {channel: ids if known is None else known & ids for channel, known in channels.items()}


def _event_ids(node: Form) -> frozenset[int] | None:
    """The event IDs a record matching ``node`` must have (``EventID`` equal to one of them), or ``None``."""
    op = node["op"]
    if op == "all":
        found = [ids for ids in map(_event_ids, node["args"]) if ids is not None]
        return frozenset.intersection(*found) if found else None
    if op == "any":
        parts = [_event_ids(arg) for arg in node["args"]]
        return None if not parts or None in parts else frozenset().union(*parts)  # type: ignore[arg-type]
    if op != "field" or node["field"] != "EventID":
        return None
    value, shape = node["value"], _string_shape(node)
    if value["type"] == "number" and float(value["number"]).is_integer():
        return frozenset({int(value["number"])})
    return frozenset({int(shape[1])}) if shape and shape[0] == "equals" and shape[1].isdigit() else None


def _single_field_tests(tree: Form) -> list[tuple[str, Predicate]]:
    """The rule's top-level conjuncts that read one field each, with that field."""
    tests = []
    for conjunct in _conjuncts(tree):
        names = _field_names(conjunct)
        if names is not None and len(names) == 1:
            tests.append((next(iter(names)), _compile_node(conjunct)))
    return tests


def _refuter(kind: str, single: list[tuple[str, Predicate]],
             names: frozenset[str] | None) -> Callable[[str], bool] | None:
    """For a rule whose literals come from tests of the fields ``names``: a test of whether one piece of a line (a
    CSV cell, an IIS token), made the value of any one of those fields, makes one of the rule's top-level
    conjuncts that read only that field false.

    A line the rule matches holds one of its literals in one of those fields' values, that is, in that
    field's piece; so if every occurrence of the literals lies in a piece that refutes the rule, it cannot
    match the line.
    """
    if names is None or names & JOINED_FIELDS:
        return None
    deciders = {name: tuple(test for field, test in single if field == name) for name in names}
    if not all(deciders.values()):
        return None

    def refutes(piece: str) -> bool:
        for name, tests in deciders.items():
            for value in cell_values(kind, name, piece):
                record = Record(0, None, {name: value}, value)
                if all(test(record) for test in tests):
                    return False
        return True

    return refutes


def _line_refuter(single: list[tuple[str, Predicate]],
                  literal_names: frozenset[str]) -> Callable[[Record], bool] | None:
    """A test of whether a line's record (all its fields, as its reader gives them; no raw text) makes one of
    the rule's top-level conjuncts that read one field false. Conjuncts on the fields the rule's literals come
    from are tried last: a line holding the literal mostly passes them."""
    if not single:
        return None
    tests = tuple(test for _, test in sorted(single, key=lambda test: test[0] in literal_names))

    def refuted(record: Record) -> bool:
        for test in tests:  # noqa: SIM110 (per line: a loop is cheaper than any() over a generator)
            if not test(record):
                return True
        return False

    return refuted


def _conjuncts(node: Form) -> Iterator[Form]:
    if node["op"] == "all":
        for arg in node["args"]:
            yield from _conjuncts(arg)
    else:
        yield node


def _field_names(node: Form) -> set[str] | None:
    """The fields a condition reads; ``None`` if it reads the raw line."""
    if node["op"] == "field":
        return {node["field"]}
    if node["op"] == "keyword":
        return None
    names: set[str] = set()
    for arg in node["args"]:
        found = _field_names(arg)
        if found is None:
            return None
        names |= found
    return names


def compile_correlation(form: Form, bases: dict[str, CompiledRule]) -> CompiledCorrelation:
    """Compile a correlation rule whose base rules are already compiled."""
    for name in form["rules"]:
        if name not in bases:
            raise UnsupportedRule(f"correlation refers to unknown or unsupported rule {name}")
    kinds = {bases[name].kind for name in form["rules"]}
    if len(kinds) != 1:
        raise UnsupportedRule("correlated rules must read the same source kind")
    return CompiledCorrelation(
        info=rule_info(form["info"]),
        kind=kinds.pop(),
        base=tuple(form["rules"]),
        type=form["type"],
        group_by=tuple(form["group_by"]),
        timespan=timedelta(seconds=form["timespan"]),
        threshold=_threshold(form["op"], form["count"]),
        value_field=form["value_field"],
        whole_windows=form["op"] in ("LT", "LTE", "EQ", "NEQ"),
    )


#: Sigma's comparison operators (of correlation conditions and ``lt``/``lte``/``gt``/``gte`` modifiers).
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "LT": operator.lt, "LTE": operator.le, "GT": operator.gt, "GTE": operator.ge, "EQ": operator.eq,
    "NEQ": operator.ne,
}


def _threshold(op: str, count: int | float) -> Callable[[int], bool]:
    if op not in _COMPARE:
        raise UnsupportedRule(f"correlation operator {op} is not supported")
    compare = _COMPARE[op]
    return lambda n: compare(n, count)


def _compile_node(node: Form) -> Predicate:
    op = node["op"]
    if op == "all":
        return _all(tuple(_compile_node(arg) for arg in node["args"]))
    if op == "any":
        return _any(_merged_strings(node["args"]) + tuple(_compile_node(arg) for arg in node["args"]
                                                          if _string_shape(arg) is None))
    if op == "not":
        inner = _compile_node(node["args"][0])
        return lambda record: not inner(record)
    if op == "field":
        return _field_predicate(node["field"], node["value"])
    if op == "keyword":
        test = _value_test(node["value"], keyword=True)
        return lambda record: test(record.raw)
    raise UnsupportedRule(f"condition element {op} is not supported")


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


def _merged_strings(args: list[Form]) -> tuple[Predicate, ...]:
    """One predicate per field for the OR-ed case-insensitive string tests on it (``endswith: [a, b]``),
    which lowers the field once and tests every value in one call per kind of test."""
    by_field: dict[str, dict[str, list[str]]] = {}
    for arg in args:
        shape = _string_shape(arg)
        if shape is not None:
            by_field.setdefault(arg["field"], {}).setdefault(shape[0], []).append(shape[1])
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


def _string_shape(node: Form) -> tuple[str, str] | None:
    """``(test, lowered literal)`` of a case-insensitive field test that is an equality, ``contains``,
    ``startswith`` or ``endswith``; ``None`` for anything else."""
    if node["op"] != "field" or node["value"]["type"] != "string" or node["value"]["cased"]:
        return None
    return _shape(_trimmed(list(node["value"]["parts"])), str.lower)


#: The ``*`` wildcard part of a string value.
STAR = {"wildcard": "*"}


def _trimmed(parts: list[str | Form]) -> list[str | Form]:
    """Wildcard parts without repeated ``*`` at either end."""
    while len(parts) > 1 and parts[0] == STAR and parts[1] == STAR:
        parts.pop(0)
    while len(parts) > 1 and parts[-1] == STAR and parts[-2] == STAR:
        parts.pop()
    return parts


def _shape(parts: list[str | Form], fold: Callable[[str], str]) -> tuple[str, str] | None:
    if all(isinstance(p, str) for p in parts):
        return "equals", fold("".join(parts))  # type: ignore[arg-type]
    if len(parts) == 3 and parts[0] == STAR and parts[2] == STAR and isinstance(parts[1], str):
        return "contains", fold(parts[1])
    if len(parts) == 2 and isinstance(parts[0], str) and parts[1] == STAR:
        return "startswith", fold(parts[0])
    if len(parts) == 2 and parts[0] == STAR and isinstance(parts[1], str):
        return "endswith", fold(parts[1])
    return None


def _field_predicate(name: str, value: Form) -> Predicate:
    if value["type"] == "null":
        return lambda record: not record.fields.get(name)
    if value["type"] == "exists":
        wanted = value["exists"]
        return lambda record: (name in record.fields) == wanted
    test = _value_test(value, keyword=False)

    def predicate(record: Record) -> bool:
        found = record.fields.get(name)
        return found is not None and test(found)

    return predicate


def _value_test(value: Form, keyword: bool) -> ValueTest:
    kind = value["type"]
    if kind == "string":
        return _string_test(value["parts"], value["cased"], keyword)
    if kind == "number":
        return _number_test(value["number"])
    if kind == "bool":
        expected = "true" if value["bool"] else "false"
        return lambda found: found.strip().lower() == expected
    if kind == "regex":
        flags = 0
        for flag in value["flags"]:
            flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[flag]
        pattern = re.compile(value["regex"], flags)
        return lambda found: pattern.search(found) is not None
    if kind == "cidr":
        return _cidr_test(ipaddress.ip_network(value["network"]))
    if kind == "compare":
        return _compare_test(value["op"], float(value["number"]))
    raise UnsupportedRule(f"value type {kind} is not supported")


def _string_test(parts: list[str | Form], cased: bool, keyword: bool) -> ValueTest:
    parts = [STAR, *parts, STAR] if keyword else list(parts)
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


def _wildcard_regex(parts: list[str | Form]) -> str:
    return "".join(re.escape(part) if isinstance(part, str) else ".*" if part == STAR else "." for part in parts)


def _number_test(number: int | float) -> ValueTest:
    def test(found: str) -> bool:
        try:
            return float(found) == number
        except ValueError:
            return False

    return test


def _cidr_test(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ValueTest:
    def test(found: str) -> bool:
        try:
            address = ipaddress.ip_address(found.strip().strip("[]"))
        except ValueError:
            return False
        return address.version == network.version and address in network

    return test


def _compare_test(op: str, limit: float) -> ValueTest:
    compare = _COMPARE[op]

    def test(found: str) -> bool:
        try:
            return compare(float(found), limit)
        except ValueError:
            return False

    return test

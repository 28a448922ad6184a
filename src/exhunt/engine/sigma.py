"""Lower Sigma rules, parsed and validated by pySigma, into exhunt's rule form (plain JSON data).

pySigma resolves modifiers (``contains``, ``startswith``, ``endswith``, ``all``, ``re``, ``cidr``,
wildcards, escapes) and the condition (``1 of``, ``all of``, ``not``) into a tree of typed values;
this module writes that tree as dicts, lists and strings (:mod:`exhunt.engine.matcher` documents
the form and compiles it). Being data, the form of a rule file can be cached, so a scan whose rules
are unchanged neither imports pySigma nor parses YAML.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
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

from exhunt import yamlio
from exhunt.engine.matcher import Form, UnsupportedRule
from exhunt.engine.taxonomy import EXCHANGE_SERVICES, windows_channels
from exhunt.model import FindingStage

_WILDCARDS = {SpecialChars.WILDCARD_MULTI: "*", SpecialChars.WILDCARD_SINGLE: "?"}
_FLAGS = {SigmaRegularExpressionFlag.IGNORECASE: "i", SigmaRegularExpressionFlag.MULTILINE: "m",
          SigmaRegularExpressionFlag.DOTALL: "s"}


def lower_files(files: Iterable[tuple[str, str]]) -> Form:
    """The form of Sigma files given as ``(path, text)``: ``rules``, ``correlations`` and ``problems``
    (``[code, message, path]``: files pySigma rejects, rules that cannot be expressed)."""
    rules: list[Form] = []
    correlations: list[Form] = []
    problems: list[list[str]] = []
    for path, text in files:
        try:
            collection = SigmaCollection.from_dicts(yamlio.load_all(text), collect_errors=True)
        except (SigmaError, ValueError, yaml.YAMLError) as exc:
            problems.append(["EXH-K001", str(exc), path])
            continue
        for item in collection.rules:
            errors = getattr(item, "errors", None) or []
            if errors:
                problems.extend(["EXH-K001", f"{item.title or '?'}: {err}", path] for err in errors)
                continue
            try:
                if isinstance(item, SigmaCorrelationRule):
                    correlations.append(lower_correlation(item, path))
                elif isinstance(item, SigmaRule):
                    rules.append(lower_rule(item, path))
            except UnsupportedRule as exc:
                code = "EXH-K003" if "logsource" in str(exc) else "EXH-K002"
                problems.append([code, f"{item.name or item.title}: {exc}", path])
    return {"rules": rules, "correlations": correlations, "problems": problems}


def source_kind(logsource: SigmaLogSource) -> str | None:
    """The evidence kind a rule's logsource selects, or ``None`` if exhunt reads no such source."""
    if logsource.category == "webserver" and logsource.product in (None, "iis", "windows"):
        return "iis"
    if logsource.product == "exchange" and logsource.category is None:
        return logsource.service if logsource.service in EXCHANGE_SERVICES else None
    if logsource.product == "windows" and windows_channels(logsource.service, logsource.category):
        return "evtx"
    return None


def lower_rule(rule: SigmaRule, path: str = "") -> Form:
    """The form of one single-event rule; raises :class:`UnsupportedRule` with the reason."""
    kind = source_kind(rule.logsource)
    if kind is None:
        raise UnsupportedRule(f"logsource {_logsource_text(rule.logsource)} is not a source exhunt reads")
    conditions = rule.detection.parsed_condition
    if len(conditions) != 1:
        raise UnsupportedRule("rules with several conditions are not supported")
    channels = None
    if kind == "evtx":
        found = windows_channels(rule.logsource.service, rule.logsource.category) or {}
        channels = {name: sorted(ids) if ids is not None else None for name, ids in found.items()}
    return {
        "name": rule.name or str(rule.id),
        "kind": kind,
        "info": _info(rule, path),
        "fields": list(rule.fields or ()),
        "condition": _node(conditions[0].parse()),
        "channels": channels,
    }


def lower_correlation(rule: SigmaCorrelationRule, path: str = "") -> Form:
    """The form of an ``event_count`` or ``value_count`` correlation."""
    kind_name = rule.type.name.lower()
    if kind_name not in ("event_count", "value_count"):
        raise UnsupportedRule(f"correlation type {kind_name} is not supported")
    condition = rule.condition
    return {
        "info": _info(rule, path),
        "type": kind_name,
        "rules": [(ref.rule.name or str(ref.rule.id)) if ref.rule is not None else str(ref.reference)
                  for ref in rule.rules],
        "group_by": list(rule.group_by or ()),
        "timespan": rule.timespan.seconds,
        "op": condition.op.name,
        "count": condition.count,
        "value_field": condition.fieldref if kind_name == "value_count" else None,
        "generate": bool(rule.generate),
    }


def _info(rule: SigmaRule | SigmaCorrelationRule, path: str = "") -> Form:
    """exhunt's finding metadata of a rule (the fields of :class:`exhunt.model.RuleInfo`)."""
    tags = rule.tags or []
    return {
        "id": rule.name or str(rule.id),
        "title": rule.title,
        "level": rule.level.name.lower() if rule.level else "medium",
        "stage": _stage(rule),
        "cves": [f"CVE-{t.name.upper()}" for t in tags if t.namespace == "cve"],
        "attack": [t.name.upper() for t in tags if t.namespace == "attack" and t.name.lower().startswith("t")],
        "references": list(rule.references or ()),
        "falsepositives": list(rule.falsepositives or ()),
        "description": (rule.description or "").strip(),
        "uuid": str(rule.id) if rule.id else "",
        "path": path,
    }


def _stage(rule: SigmaRule | SigmaCorrelationRule) -> str:
    stage = str(rule.custom_attributes.get("stage", "probe"))
    if stage not in {str(known) for known in FindingStage}:
        raise UnsupportedRule(f"stage {stage!r} is not one of {', '.join(str(known) for known in FindingStage)}")
    return stage


def _logsource_text(logsource: SigmaLogSource) -> str:
    parts = (f"{key}: {value}" for key, value in (("product", logsource.product),
                                                  ("category", logsource.category),
                                                  ("service", logsource.service)) if value)
    return "{" + ", ".join(parts) + "}"


def _node(node: object) -> Form:
    if isinstance(node, (ConditionAND, ConditionOR)):
        return {"op": "all" if isinstance(node, ConditionAND) else "any", "args": [_node(a) for a in node.args]}
    if isinstance(node, ConditionNOT):
        return {"op": "not", "args": [_node(node.args[0])]}
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return {"op": "field", "field": node.field, "value": _value(node.value)}
    if isinstance(node, ConditionValueExpression):
        return {"op": "keyword", "value": _value(node.value)}
    raise UnsupportedRule(f"condition element {type(node).__name__} is not supported")


def _value(value: object) -> Form:
    if isinstance(value, SigmaString):
        return {"type": "string", "parts": [_part(part) for part in value.s],
                "cased": isinstance(value, SigmaCasedString)}
    if isinstance(value, SigmaNumber):
        return {"type": "number", "number": value.number}
    if isinstance(value, SigmaBool):
        return {"type": "bool", "bool": value.boolean}
    if isinstance(value, SigmaRegularExpression):
        return {"type": "regex", "regex": value.regexp.to_plain(),
                "flags": "".join(sorted(_FLAGS[flag] for flag in value.flags))}
    if isinstance(value, SigmaCIDRExpression):
        return {"type": "cidr", "network": str(value.network)}
    if isinstance(value, SigmaCompareExpression):
        return {"type": "compare", "op": value.op.name, "number": value.number.number}
    if isinstance(value, SigmaNull):
        return {"type": "null"}
    if isinstance(value, SigmaExists):
        return {"type": "exists", "exists": value.exists}
    raise UnsupportedRule(f"value type {type(value).__name__} is not supported")


def _part(part: object) -> str | Form:
    if isinstance(part, str):
        return part
    if isinstance(part, SpecialChars) and part in _WILDCARDS:
        return {"wildcard": _WILDCARDS[part]}
    raise UnsupportedRule(f"special value {part!r} (placeholder or expansion) is not supported")

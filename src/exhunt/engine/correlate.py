"""Evaluate Sigma ``event_count``/``value_count`` correlations over base-rule matches of one host."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from exhunt.engine.matcher import CompiledCorrelation
from exhunt.model import Finding, Record, utc_iso

#: How many distinct values a correlation finding lists as evidence.
SAMPLE_VALUES = 10


@dataclass(frozen=True, slots=True)
class BaseMatch:
    """A hidden base rule that matched a record (input to correlations)."""

    rule: str
    record: Record
    source: str
    origin: str


def correlate(correlation: CompiledCorrelation, matches: Iterable[BaseMatch], host: str) -> list[Finding]:
    """One finding per group and burst in which the correlation condition holds.

    Events are grouped by the ``group-by`` fields and ordered by time. For a lower bound (``gt``,
    ``gte``) a sliding window of ``timespan`` is moved over each group, and when the condition first
    holds a finding is made from the window's events; the next burst starts after that window. Upper
    bounds and exact counts (``whole_windows``) are judged on whole windows instead: each starts at an
    event, holds every event of the group within ``timespan`` of it, and the next starts after it.
    """
    groups: dict[tuple[str, ...], list[BaseMatch]] = defaultdict(list)
    for match in matches:
        if match.rule in correlation.base and match.record.time is not None:
            key = tuple(match.record.fields.get(name, "") for name in correlation.group_by)
            groups[key].append(match)
    findings = []
    for key in sorted(groups):
        events = sorted(groups[key], key=lambda m: (m.record.time, m.source, m.record.line))
        if correlation.whole_windows:
            findings.extend(_finding(correlation, key, window, host) for window in _whole_windows(correlation, events)
                            if correlation.threshold(_measure(correlation, window)))
            continue
        start = 0
        for end in range(len(events)):
            while events[end].record.time - events[start].record.time > correlation.timespan:  # type: ignore[operator]
                start += 1
            window = events[start:end + 1]
            if correlation.threshold(_measure(correlation, window)):
                findings.append(_finding(correlation, key, window, host))
                start = end + 1
    return findings


def _whole_windows(correlation: CompiledCorrelation, events: list[BaseMatch]) -> list[list[BaseMatch]]:
    windows, start = [], 0
    while start < len(events):
        end = start + 1
        while end < len(events) and events[end].record.time - events[start].record.time <= correlation.timespan:  # type: ignore[operator]
            end += 1
        windows.append(events[start:end])
        start = end
    return windows


def _measure(correlation: CompiledCorrelation, window: list[BaseMatch]) -> int:
    if correlation.value_field is None:
        return len(window)
    return len({m.record.fields.get(correlation.value_field, "") for m in window})


def _finding(correlation: CompiledCorrelation, key: tuple[str, ...], window: list[BaseMatch],
             host: str) -> Finding:
    first, last = window[0], window[-1]
    evidence = dict(zip(correlation.group_by, key, strict=True))
    evidence["events"] = str(len(window))
    evidence["last_time"] = utc_iso(last.record.time) or ""
    if correlation.value_field:
        values = sorted({m.record.fields.get(correlation.value_field, "") for m in window})
        evidence["distinct_" + correlation.value_field] = str(len(values))
        evidence["sample"] = ", ".join(values[:SAMPLE_VALUES])
    return Finding(
        host=host,
        rule=correlation.info,
        time=first.record.time,
        source=first.source,
        line=first.record.line,
        evidence=evidence,
        source_kind=correlation.kind,
        origin=first.origin,
    )

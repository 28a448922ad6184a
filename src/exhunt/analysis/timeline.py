"""One row per finding, across every host, in time order: the spine of a scoping report.

Rows are ordered by (UTC time, host, source, line, rule); findings without a time (files whose
layout kept no modification time) come last, ordered by host, source and line. The description is
the same one-line message the Timesketch and CSV writers use (:func:`exhunt.text.message`),
so it is single-line and safe to print.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from exhunt.model import Finding, ScanResult, utc_iso
from exhunt.text import message

from .refs import client_address


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A finding as a timeline row."""

    time: datetime | None
    host: str
    source_kind: str
    source: str
    line: int | None
    rule: str
    level: str
    stage: str
    client_ip: str | None
    description: str

    def to_dict(self) -> dict[str, object]:
        return {
            "time": utc_iso(self.time),
            "host": self.host,
            "source_kind": self.source_kind,
            "source": self.source,
            "line": self.line,
            "rule": self.rule,
            "level": self.level,
            "stage": self.stage,
            "client_ip": self.client_ip,
            "description": self.description,
        }


def event(finding: Finding) -> TimelineEvent:
    """One finding as a row (``client_ip`` also from the evidence of correlation findings)."""
    return TimelineEvent(
        time=finding.time,
        host=finding.host,
        source_kind=finding.source_kind,
        source=finding.source,
        line=finding.line,
        rule=finding.rule.id,
        level=str(finding.rule.level),
        stage=finding.rule.stage.value,
        client_ip=finding.client_ip or client_address(finding),
        description=message(finding),
    )


def sort_key(row: TimelineEvent) -> tuple[bool, str, str, str, int, str]:
    """(untimed, UTC time, host, source, line, rule): timed rows first, in time order."""
    return (row.time is None, utc_iso(row.time) or "", row.host, row.source, row.line or 0, row.rule)


def timeline(result: ScanResult) -> tuple[TimelineEvent, ...]:
    """Every finding of every host as a :class:`TimelineEvent`, ordered as the module describes."""
    return tuple(sorted((event(f) for f in result.findings), key=sort_key))

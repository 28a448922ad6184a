"""``timeline.jsonl``: one flat JSON object per finding, ready for Timesketch's JSONL import.

Timesketch needs ``message``, ``datetime`` (ISO-8601) and ``timestamp_desc``; ``timestamp`` is
microseconds since the epoch. Records are flat (no nested objects or lists): lists become comma
strings and evidence fields become ``evidence_<name>`` (names reduced to letters, digits and ``_``).
Findings without a time cannot be placed on a timeline: they are skipped and counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from exhunt.model import Finding
from exhunt.outputs.common import json_line, utc_micro
from exhunt.text import message, one_line

FILE_NAME = "timeline.jsonl"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_]+")


def timestamp_desc(finding: Finding) -> str:
    """What the time means: when a log line was written, or when an event was recorded."""
    return "Event Recorded" if finding.source_kind.startswith("evtx") else "Log Line"


def evidence_key(name: str) -> str:
    """``evidence_`` plus the field name with anything but letters, digits and ``_`` made ``_``."""
    return "evidence_" + (_UNSAFE_NAME.sub("_", name).strip("_") or "field")


def event(finding: Finding) -> dict[str, str | int | None] | None:
    """The Timesketch record of a finding, or ``None`` when the finding has no time."""
    if finding.time is None:
        return None
    moment, micros = utc_micro(finding.time)
    record: dict[str, str | int | None] = {
        "message": message(finding),
        "datetime": moment,
        "timestamp": micros,
        "timestamp_desc": timestamp_desc(finding),
        "host": finding.host,
        "rule": finding.rule.id,
        "title": finding.rule.title,
        "level": str(finding.rule.level),
        "stage": finding.rule.stage.value,
        "cves": ",".join(finding.rule.cves),
        "attack": ",".join(finding.rule.attack),
        "client_ip": finding.client_ip or "",
        "source": finding.source,
        "line": finding.line,
        "source_kind": finding.source_kind,
        "origin": finding.origin,
        "data_type": "exhunt:finding",
    }
    for name, value in finding.evidence.items():
        key = evidence_key(str(name))
        while key in record:
            key += "_"
        record[key] = one_line(value) if isinstance(value, str) else one_line(json.dumps(value, default=str))
    return record


def write_timeline(findings: Iterable[Finding], stream: IO[str]) -> tuple[int, int]:
    """Write one line per timed finding; returns ``(written, skipped_without_time)``."""
    written = skipped = 0
    for finding in findings:
        record = event(finding)
        if record is None:
            skipped += 1
            continue
        stream.write(json_line(record) + "\n")
        written += 1
    return written, skipped


def untimed(findings: Iterable[Finding]) -> int:
    """How many findings a timeline leaves out because they carry no time."""
    return sum(1 for finding in findings if finding.time is None)


def write_timeline_file(findings: Iterable[Finding], folder: Path) -> Path:
    """Write ``timeline.jsonl`` into ``folder`` and return its path (:func:`untimed` counts what was left out)."""
    path = folder / FILE_NAME
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        write_timeline(findings, stream)
    return path

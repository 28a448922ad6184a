"""Typed records, findings and results shared by every stage of a scan.

Data flows one way: layouts -> sources -> readers (Record) -> engine (Finding)
-> analysis (HostResult) -> outputs. Every object here is a frozen dataclass.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache


class Level(enum.IntEnum):
    """Sigma rule levels, ordered so that they compare by severity."""

    INFORMATIONAL = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Level:
        return cls[text.strip().upper()]

    def __str__(self) -> str:
        return self.name.lower()


class Stage(enum.IntEnum):
    """How far an attack got on a host, ordered by severity.

    ``UNKNOWN`` is used when no evidence that could be assessed was given.
    """

    UNKNOWN = -1
    CLEAN = 0
    PROBED = 1
    EXPLOITED = 2
    COMPROMISED = 3

    def __str__(self) -> str:
        return self.name.lower()


class FindingStage(enum.StrEnum):
    """What a single detection means: an attempt, a working exploit, or what came after."""

    PROBE = "probe"
    EXPLOIT = "exploit"
    POST = "post"

    @property
    def host_stage(self) -> Stage:
        return {"probe": Stage.PROBED, "exploit": Stage.EXPLOITED, "post": Stage.COMPROMISED}[self.value]


def location(source: str, line: int | None) -> str:
    """``source:line``, or ``source`` alone when there is no line."""
    return f"{source}:{line}" if line is not None else source


@lru_cache(maxsize=1 << 14)
def utc_iso(moment: datetime | None) -> str | None:
    """Render an aware datetime as UTC ISO-8601 with a ``Z`` suffix and millisecond precision (cached: findings
    are sorted and written by their times many times over)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime reached the output layer")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A problem found while reading evidence or rules: errors are data, not exceptions.

    ``code`` is stable (see :mod:`exhunt.diagnostics`); ``source`` is the evidence path
    (Windows namespace when known), ``line`` the 1-based physical line (the record number for
    event logs) and ``offset`` the byte offset in the file, when they apply.
    """

    code: str
    level: str
    message: str
    source: str | None = None
    line: int | None = None
    host: str | None = None
    offset: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "level": self.level,
            "message": self.message,
            "source": self.source,
            "line": self.line,
            "host": self.host,
            "offset": self.offset,
        }


@dataclass(frozen=True, slots=True)
class Record:
    """One log event: its fields by name, the raw line, and where it came from."""

    line: int
    time: datetime | None
    fields: Mapping[str, str]
    raw: str


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """Metadata of a detection rule, as carried into every finding."""

    id: str
    title: str
    level: Level
    stage: FindingStage
    cves: tuple[str, ...] = ()
    attack: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    falsepositives: tuple[str, ...] = ()
    description: str = ""
    uuid: str = ""
    path: str = ""
    #: Counts at its full stage only on a host that already shows exploitation (e.g. a staging
    #: archive: alone it is only ``low``, CSS-Exchange issue 311).
    after_exploitation: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that matched evidence on a host."""

    host: str
    rule: RuleInfo
    time: datetime | None
    source: str
    line: int | None
    evidence: Mapping[str, str]
    client_ip: str | None = None
    source_kind: str = ""
    origin: str = ""

    def sort_key(self) -> tuple[str, str, str, int, str]:
        return (self.host, utc_iso(self.time) or "", self.source, self.line or 0, self.rule.id)

    def to_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "rule": self.rule.id,
            "title": self.rule.title,
            "cves": list(self.rule.cves),
            "stage": self.rule.stage.value,
            "level": str(self.rule.level),
            "time": utc_iso(self.time),
            "source": self.source,
            "line": self.line,
            "evidence": dict(self.evidence),
            "client_ip": self.client_ip,
            "source_kind": self.source_kind,
            "origin": self.origin,
            "attack": list(self.rule.attack),
        }


@dataclass(frozen=True, slots=True)
class SourceCoverage:
    """What one kind of evidence on one host contributed to the scan."""

    kind: str
    files: int
    records: int
    first: datetime | None
    last: datetime | None
    diagnostics: int
    bytes: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.kind,
            "files": self.files,
            "records": self.records,
            "first": utc_iso(self.first),
            "last": utc_iso(self.last),
            "diagnostics": self.diagnostics,
            "bytes": self.bytes,
        }


@dataclass(frozen=True, slots=True)
class Mitigation:
    """A mitigation rule found in IIS configuration; ``seen`` is the file's modification time."""

    name: str
    label: str
    covers: tuple[str, ...]
    source: str
    line: int
    seen: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "label": self.label, "covers": list(self.covers), "source": self.source,
                "line": self.line, "file_modified": utc_iso(self.seen)}


@dataclass(frozen=True, slots=True)
class Exposure:
    """Which CVEs a host's Exchange build leaves open, per the shipped build table."""

    build: str | None
    product: str | None = None
    unpatched: tuple[str, ...] = ()
    status: str = "unknown"
    builds_seen: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    mitigations: tuple[Mitigation, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "build": self.build,
            "product": self.product,
            "status": self.status,
            "unpatched": list(self.unpatched),
            "builds_seen": list(self.builds_seen),
            "notes": list(self.notes),
            "mitigations": [m.to_dict() for m in self.mitigations],
        }


@dataclass(frozen=True, slots=True)
class ChainActivity:
    """One campaign's activity on a host and whether the build it ran then was exposed to it."""

    chain: str
    first: datetime | None
    last: datetime | None
    findings: int
    build: str | None
    exposed: bool | None
    open_cves: tuple[str, ...]
    summary: str

    def to_dict(self) -> dict[str, object]:
        return {
            "chain": self.chain,
            "first": utc_iso(self.first),
            "last": utc_iso(self.last),
            "findings": self.findings,
            "build_at_time": self.build,
            "exposed": self.exposed,
            "open_cves": list(self.open_cves),
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class HostResult:
    """The verdict for one host: stage, exposure, coverage and what could not be assessed."""

    host: str
    layout: str
    evidence: tuple[str, ...]
    stage: Stage
    exposure: Exposure
    coverage: tuple[SourceCoverage, ...]
    not_assessed: tuple[str, ...]
    assessed: tuple[str, ...]
    findings: tuple[Finding, ...]
    stage_reasons: tuple[str, ...] = ()
    chains: tuple[ChainActivity, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "layout": self.layout,
            "evidence": list(self.evidence),
            "stage": str(self.stage),
            "stage_reasons": list(self.stage_reasons),
            "exposure": self.exposure.to_dict(),
            "coverage": [c.to_dict() for c in self.coverage],
            "assessed": list(self.assessed),
            "not_assessed": list(self.not_assessed),
            "findings": len(self.findings),
            "chains": [chain.to_dict() for chain in self.chains],
        }


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Everything a scan produced, ready for the output writers."""

    hosts: tuple[HostResult, ...]
    diagnostics: tuple[Diagnostic, ...]
    started: datetime
    finished: datetime
    rules: tuple[RuleInfo, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for h in self.hosts for f in h.findings)

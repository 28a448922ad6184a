"""The case file: a SQLite database that makes a long scan safe to interrupt.

It keeps the run's metadata, the evidence inventory (Windows path, origin, size, modification
time, SHA-256, layout), each finished unit of work with its results, and the final result. A
scan restarted with the same arguments skips every unit whose evidence fingerprint (size,
mtime, SHA-256) is unchanged, so findings are neither lost nor duplicated; ``exhunt report``
renders every output format from the stored result without the evidence.

Results are stored as JSON. Only the dataclasses registered here are ever rebuilt from it (no
pickle, nothing evaluated), so a case file handed over by someone else cannot run code.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sqlite3
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from exhunt import __version__, model
from exhunt.layouts.evidence import EvidenceFile

#: Dataclasses and enums a case file may contain, by name.
_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (model.RuleInfo, model.Finding, model.Record, model.Diagnostic, model.SourceCoverage,
                model.Mitigation, model.Exposure, model.ChainActivity, model.HostResult, model.ScanResult,
                model.Level, model.Stage, model.FindingStage)
}
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (origin TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL,
    mtime REAL, sha256 TEXT NOT NULL, layout TEXT NOT NULL, collection TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS result (id INTEGER PRIMARY KEY CHECK (id = 1), document TEXT NOT NULL);
"""


class CaseMismatch(ValueError):
    """The case file was made by a scan with other arguments."""


def register(*types: type) -> None:
    """Allow more dataclasses (the pipeline's own accumulators) in case files."""
    _TYPES.update((cls.__name__, cls) for cls in types)


def encode(value: Any) -> Any:
    """A JSON-ready form of results: dataclasses, datetimes, enums, tuples, counters."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"@": type(value).__name__,
                **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, enum.Enum):
        return {"@enum": type(value).__name__, "name": value.name}
    if isinstance(value, datetime):
        return {"@datetime": value.isoformat()}
    if isinstance(value, tuple):
        return {"@tuple": [encode(item) for item in value]}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, Mapping):
        kind = "@counter" if isinstance(value, Counter) else "@dict"
        return {kind: [[encode(k), encode(v)] for k, v in value.items()]}
    return value


def decode(value: Any) -> Any:
    """Rebuild what :func:`encode` wrote; only registered types are instantiated."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "@datetime" in value:
        return datetime.fromisoformat(value["@datetime"])
    if "@tuple" in value:
        return tuple(decode(item) for item in value["@tuple"])
    if "@dict" in value or "@counter" in value:
        pairs = {decode(k): decode(v) for k, v in value.get("@dict", value.get("@counter", []))}
        return Counter(pairs) if "@counter" in value else pairs
    if "@enum" in value:
        return _known(value["@enum"])[value["name"]]
    if "@" in value:
        cls = _known(value["@"])
        return cls(**{key: decode(item) for key, item in value.items() if key != "@"})
    raise ValueError("unexpected object in case file")


def _known(name: str) -> Any:
    try:
        return _TYPES[name]
    except KeyError:
        raise ValueError(f"case file holds an unknown type {name!r}") from None


def fingerprint(evidence: EvidenceFile) -> str:
    """``size:mtime:sha256`` of an evidence file (the bytes are read, read-only)."""
    return f"{evidence.size}:{evidence.mtime or 0:.6f}:{evidence.sha256()}"


class Case:
    """An open case file. Every write is committed at once, so an interrupted scan keeps its work."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def bind(self, signature: Mapping[str, object], command: str, rules_version: str) -> None:
        """Tie the case to one scan's arguments; a different scan is refused."""
        text = json.dumps(signature, sort_keys=True, default=str)
        stored = self._meta("signature")
        if stored is not None and stored != text:
            raise CaseMismatch(f"{self.path} belongs to a scan with other arguments: {stored}")
        self._set_meta("signature", text)
        self._set_meta("exhunt_version", __version__)
        self._set_meta("rules_version", rules_version)
        self._set_meta("command", command)

    def record_evidence(self, evidence: EvidenceFile, fingerprint_text: str, layout: str, collection: str) -> None:
        size, mtime, sha256 = fingerprint_text.split(":", 2)
        self._db.execute("INSERT OR REPLACE INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (evidence.origin, evidence.path, int(size), float(mtime), sha256, layout, collection))

    def outcome(self, key: str, fingerprint_text: str) -> Any | None:
        """The stored results of a finished unit, if its evidence is unchanged."""
        row = self._db.execute("SELECT fingerprint, outcome FROM units WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] != fingerprint_text:
            return None
        return decode(json.loads(row[1]))

    def save_outcome(self, key: str, fingerprint_text: str, outcome: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO units VALUES (?, ?, ?)",
                         (key, fingerprint_text, json.dumps(encode(outcome))))

    def save_result(self, result: model.ScanResult) -> None:
        self._db.execute("INSERT OR REPLACE INTO result VALUES (1, ?)", (json.dumps(encode(result)),))

    def result(self) -> model.ScanResult:
        row = self._db.execute("SELECT document FROM result WHERE id = 1").fetchone()
        if row is None:
            raise ValueError(f"{self.path} holds no finished scan (run the scan again to complete it)")
        return decode(json.loads(row[0]))

    def command(self) -> str:
        return self._meta("command") or ""

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

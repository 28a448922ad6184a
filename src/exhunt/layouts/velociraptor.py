"""Velociraptor offline collections, zipped or extracted.

Uploads live under ``uploads/<accessor>/<device>/<names...>`` with each name escaped by
Velociraptor's ``SanitizeStringForZip`` (``C:`` is ``C%3A``, ``\\\\.\\C:`` is
``%5C%5C.%5CC%3A``). Only ``uploads/`` entries are evidence; the host name comes from
``client_info.json``.

Zip entries keep one timestamp at two-second resolution; the file system's times are in the
collection's result files instead: ``results/<artifact>%2F<source>.json``, JSON lines whose rows
carry ``SourceFile`` and ``Created`` (birth), ``Changed``, ``Modified`` and ``LastAccessed`` (the
``All Matches Metadata`` / ``All File Metadata`` and ``Uploads`` sources of
``Generic.Collectors.File`` and ``Windows.KapeFiles.Targets``). Every result file whose name
mentions ``Metadata`` or ``Uploads`` is read; rows without a ``SourceFile`` are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from exhunt.diagnostics import make
from exhunt.layouts.evidence import EvidenceFile
from exhunt.layouts.listing import Entry, Listing, Problem
from exhunt.layouts.mapped import Mapped

#: Top-level metadata files (case-folded), one of which must sit beside ``uploads/``.
METADATA = frozenset({"uploads.json", "client_info.json", "collection_context.json", "log.json"})
#: When one Windows path was uploaded through several accessors, the lowest rank is kept.
ACCESSOR_RANK = {"auto": 0, "ntfs": 1, "lazy_ntfs": 2, "mft": 3, "file": 4}
#: Keys of ``client_info.json`` that name the host, by preference.
HOST_KEYS = ("Hostname", "hostname", "Fqdn", "fqdn")
#: Characters Velociraptor escapes besides control characters.
_ESCAPED = frozenset('?"*:|<>%/\\. ')
_HEX = re.compile(r"%([0-9A-Fa-f]{2})")
_DRIVE = re.compile(r"(?:\\\\[.?]\\)?([A-Za-z]):")
_METADATA_LIMIT = 1 << 20
#: Result files larger than this are not read for file times (a diagnostic says so).
RESULTS_LIMIT = 256 << 20
#: Result-row keys holding file-system times, and the names exhunt reports them under.
TIME_KEYS = (("Created", "created"), ("Changed", "changed"), ("Modified", "modified"), ("LastAccessed", "accessed"))
_FRACTION = re.compile(r"(\.\d{6})\d+")


def unescape(name: str) -> str:
    """Decode one escaped name component, once.

    Only ``%XX`` sequences for characters Velociraptor escapes are decoded, so both
    ``%254Operational`` (current) and ``%4Operational`` (older collectors) give ``%4Operational``.
    """

    def decode(match: re.Match[str]) -> str:
        char = chr(int(match[1], 16))
        return char if char in _ESCAPED or char < " " or char == "\x7f" else match[0]

    return _HEX.sub(decode, name)


def windows_path(parts: tuple[str, ...]) -> str | None:
    """The Windows path of ``<device>/<names...>``; ``None`` if a name is unsafe.

    ``C%3A`` and ``%5C%5C.%5Cc%3A`` become ``C:``; other device paths, such as volume
    shadow copies (``\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1``), are kept.
    A decoded name that is ``.``, ``..`` or holds a separator is unsafe.
    """
    device, *names = (unescape(part) for part in parts)
    if drive := _DRIVE.fullmatch(device):
        head = [f"{drive[1].upper()}:"]
    elif device.startswith("\\\\") and ".." not in device.split("\\"):
        head = [device]
    else:
        head, names = [], [device, *names]
    if any(name in (".", "..") or "\\" in name or "/" in name for name in names):
        return None
    return "\\".join(head + names)


def recognise(listing: Listing) -> Mapped | None:
    """Map a Velociraptor collection, or ``None`` if ``listing`` is not one."""
    top = {entry.parts[0].casefold() for entry in listing.entries}
    uploads = [entry for entry in listing.entries
               if len(entry.parts) > 2 and entry.parts[0].casefold() == "uploads"]
    if not uploads or not top & METADATA:
        return None
    problems = list(listing.problems)
    chosen: dict[str, tuple[int, str, Entry]] = {}
    for entry in uploads:
        path = windows_path(entry.parts[2:])
        if path is None:
            problems.append(Problem(entry.parts, make(
                "EXH-L003", "upload whose decoded name is '.', '..' or holds a separator skipped",
                source=entry.origin)))
            continue
        rank = ACCESSOR_RANK.get(entry.parts[1].casefold(), len(ACCESSOR_RANK))
        key = path.casefold()
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, path, entry)
    times = _file_times(listing, problems)
    files = tuple(_timed(entry.evidence(path), times.get(path.casefold())) for _, path, entry in chosen.values())
    hostname = None
    info = next((entry for entry in listing.entries
                 if len(entry.parts) == 1 and entry.parts[0].casefold() == "client_info.json"), None)
    if info is not None:
        hostname, problem = _hostname(info)
        if problem is not None:
            problems.append(problem)
    return Mapped("velociraptor", files, tuple(problems), hostname)


def _timed(evidence: EvidenceFile, times: tuple[tuple[str, float], ...] | None) -> EvidenceFile:
    if not times:
        return evidence
    modified = dict(times).get("modified")
    return replace(evidence, times=times, mtime=evidence.mtime if modified is None else modified)


def _file_times(listing: Listing, problems: list[Problem]) -> dict[str, tuple[tuple[str, float], ...]]:
    """File-system times by case-folded Windows path, from the collection's result files."""
    found: dict[str, tuple[tuple[str, float], ...]] = {}
    for entry in listing.entries:
        name = unescape(entry.parts[-1]) if len(entry.parts) == 2 else ""
        if entry.parts[0].casefold() != "results" or not name.casefold().endswith(".json") \
                or not ("metadata" in name.casefold() or "uploads" in name.casefold()):
            continue
        if entry.size > RESULTS_LIMIT:
            problems.append(Problem(entry.parts, make(
                "EXH-L005", f"result file of {entry.size} bytes not read for file times (limit {RESULTS_LIMIT})",
                source=entry.origin)))
            continue
        bad = 0
        try:
            with entry.evidence(name).open() as stream:
                for raw in stream:
                    try:
                        row = _row(raw) if raw.strip() else None
                    except ValueError:
                        bad += 1
                        continue
                    if row is not None and row[1]:
                        found.setdefault(row[0].casefold(), row[1])
        except Exception as exc:  # attacker-influenced metadata: any failure is a diagnostic
            problems.append(Problem(entry.parts, make("EXH-L005", f"cannot read {name}: {exc}", source=entry.origin)))
            continue
        if bad:
            problems.append(Problem(entry.parts, make(
                "EXH-L005", f"{bad} line(s) of {name} are not JSON", source=entry.origin)))
    return found


def _row(raw: bytes) -> tuple[str, tuple[tuple[str, float], ...]] | None:
    """``(Windows path, times)`` of one result row, ``None`` if it is not a file row; ``ValueError`` if not JSON."""
    row = json.loads(raw)
    source = row.get("SourceFile") if isinstance(row, dict) else None
    if not isinstance(source, str) or not source:
        return None
    times = tuple((label, moment) for key, label in TIME_KEYS
                  if (moment := _timestamp(row.get(key))) is not None)
    return _source_path(source), times


def _source_path(source: str) -> str:
    """``\\\\.\\C:\\x`` or ``c:\\x`` -> ``C:\\x``; other device paths are kept as they are."""
    drive = _DRIVE.match(source)
    return f"{drive[1].upper()}:{source[drive.end():]}" if drive else source


def _timestamp(value: object) -> float | None:
    """POSIX seconds of an RFC 3339 time (Go writes up to nine fractional digits); ``None`` if not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        return None
    if moment.tzinfo is None or moment.year < 1971:  # no zone, or Go's zero time: not a real time
        return None
    return moment.timestamp()


def _hostname(info: Entry) -> tuple[str | None, Problem | None]:
    """Read the host name from ``client_info.json`` (an object, a list of them, or JSON lines)."""
    try:
        with info.evidence(info.parts[0]).open() as stream:
            text = stream.read(_METADATA_LIMIT).decode("utf-8-sig")
        records = _objects(text)
    except Exception as exc:  # attacker-influenced metadata: any failure is a diagnostic
        return None, Problem(info.parts, make("EXH-L005", f"cannot parse client_info.json: {exc}",
                                              source=info.origin))
    nested = [value for record in records for value in record.values() if isinstance(value, dict)]
    candidates = records + nested
    for key in HOST_KEYS:
        for candidate in candidates:
            value = candidate.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip(), None
    return None, None


def _objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a document holding one object, a list of them, or JSON lines."""
    try:
        data = json.loads(text)
        values = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        values = [json.loads(line) for line in text.splitlines() if line.strip()]
    objects = [value for value in values if isinstance(value, dict)]
    if not objects:
        raise ValueError("no JSON object found")
    return objects

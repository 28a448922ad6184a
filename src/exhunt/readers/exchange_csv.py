"""Exchange activity logs in CSV form: HttpProxy, ECP Server/Activity, Rps_Http.

Columns are mapped by the ``#Fields:`` directive (the sets differ between builds), or by a
bare column-name line as Windows PowerShell's ``Import-Csv``/``Export-Csv`` write it
(detections.md §1.1); a header may repeat mid-file. Values are CSV-quoted when they
contain commas.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from functools import lru_cache

from exhunt.diagnostics import FileDiagnostics
from exhunt.model import Record
from exhunt.readers import FileFacts
from exhunt.readers.lines import MAX_LINE, Lines, directive, parse_iso_utc

# A field may be as long as the longest line a reader keeps.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE))

#: Column names that start an Exchange log header line (time column first).
_TIME_COLUMNS = ("DateTime", "TimeStamp")
_BUILD_COLUMNS = ("MajorVersion", "MinorVersion", "BuildVersion", "RevisionVersion")
_SERVER_COLUMNS = ("ServerHostName", "ServerName")
_ECP_BUILD = re.compile(r"S:BLD=(\d+\.\d+\.\d+\.\d+)", re.IGNORECASE)
#: Log types whose ``#Version`` directive is the server build (ECP logs write 15.0.0.0).
_VERSIONED_LOG_TYPES = ("httpproxy logs", "rps http logs", "ews logs", "rps cmdlet logs")


def read(lines: Lines, diags: FileDiagnostics, facts: FileFacts,
         default_fields: tuple[str, ...] = ()) -> Iterator[Record]:
    """Stream the records of one Exchange CSV log."""
    fields: tuple[str, ...] = ()
    version: str | None = None
    assumed = False
    for number, text in lines:
        if not text.strip():
            continue
        if text.startswith("#"):
            name, value = directive(text)
            if name == "fields":
                fields = tuple(split_cells(value))
            elif name == "log-type":
                facts.log_type = value
            elif name == "version":
                version = value
            continue
        cells = split_cells(text)
        if cells and cells[0] in _TIME_COLUMNS:
            fields = tuple(cells)
            continue
        if not fields:
            if not default_fields:
                diags.add("EXH-R002", "data line before any column header", number)
                yield Record(number, None, {}, text)
                continue
            fields = default_fields
            assumed = True
            diags.add("EXH-R004", "no #Fields header; default columns of this log type assumed", number)
        record = _record(number, text, cells, fields, diags)
        facts.records += 1
        facts.saw_time(record.time)
        _note_facts(record, facts, version)
        yield record
    if assumed and facts.records == 0:
        diags.add("EXH-R004", "header assumed but no data line was read")


def split_cells(text: str) -> list[str]:
    """The cells of one line as the reader takes them (the whole line as one cell if it is not valid CSV)."""
    try:
        return next(csv.reader((text,)), [])
    except csv.Error:
        return [text]


def _record(number: int, text: str, cells: list[str], fields: tuple[str, ...],
            diags: FileDiagnostics) -> Record:
    if len(cells) > len(fields) and fields[-1] == "EventData":
        # ECP logs quote single S:KEY=value items, not the whole EventData column, so the
        # last column is the rest of the line (HelseCERT's ECPServer excerpt, detections.md §1.2).
        cells = text.split(",", len(fields) - 1)
    if len(cells) > len(fields):
        diags.add("EXH-R002", f"{len(cells)} cells for {len(fields)} columns", number)
        values: dict[str, str] = {}
    else:
        if len(cells) < len(fields):
            diags.add("EXH-R002", f"{len(cells)} cells for {len(fields)} columns; missing cells empty", number)
        values = dict(zip(fields, cells, strict=False))
    raw_time = values.get("DateTime") or values.get("TimeStamp") or ""
    moment = parse_iso_utc(raw_time) if raw_time else None
    if raw_time and moment is None:
        diags.add("EXH-R005", f"unparseable timestamp {raw_time[:40]!r}", number)
    return Record(number, moment, values, text)


@lru_cache(maxsize=256)
def _build_text(parts: tuple[str, ...]) -> str | None:
    """``15.1.2176.2`` from the four version columns, or ``None`` when they are not numbers."""
    return ".".join(str(int(part)) for part in parts) if all(part.isdigit() for part in parts) else None


def _note_facts(record: Record, facts: FileFacts, version: str | None) -> None:
    values = record.fields
    build = _build_text(tuple(values.get(name, "") for name in _BUILD_COLUMNS))
    if build:
        facts.saw_build(build, record.time)
    elif version and (facts.log_type or "").lower() in _VERSIONED_LOG_TYPES:
        facts.saw_build(version, record.time)
    event_data = values.get("EventData", "")
    if "S:BLD=" in event_data or "S:Bld=" in event_data:
        match = _ECP_BUILD.search(event_data)
        if match:
            facts.saw_build(match.group(1), record.time)
    for name in _SERVER_COLUMNS:
        server = values.get(name)
        if server:
            facts.servers[server] += 1
            break

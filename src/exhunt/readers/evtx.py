"""Windows event logs (EVTX), parsed by the Rust-backed ``evtx`` package and flattened.

Records become Sigma-style fields: ``EventID``, ``Channel``, ``Provider_Name``, ``Computer``,
``Level``, ``TimeCreated`` (from ``System/TimeCreated/@SystemTime``; the record header time is
unreliable, see the samples MANIFEST), ``EventRecordID``, ``Security_UserID`` and every
``EventData``/``UserData`` item by name. Unnamed ``<Data>`` items are ``Data[0]``, ``Data[1]``, ...
The System fields say which log and event a record is: an item named like one of them is kept as
``EventData_<name>`` or ``UserData_<name>`` (event 104 names the log it cleared ``Channel``). An event
that no rule reads (the scan's ``admits``, by channel and event ID) is counted from its System section
and not flattened further.

``MSExchange Management`` events store only ``<Data>`` items; the cmdlet (``Data[0]``) and its
parameters (``Data[1]``) are rebuilt into ``CmdletName``, ``CmdletParameters`` and a ``Message``
in Exchange's own wording (which spells "suceeded"). The raw text that keyword rules search is the
message, when there is one, followed by every field value.

A corrupt chunk becomes a diagnostic with its file offset and the rest of the file is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any

import evtx

from exhunt.diagnostics import FileDiagnostics
from exhunt.model import Record
from exhunt.readers import FileFacts

#: Where chunk ``n`` starts: a 4 KiB file header, then 64 KiB chunks.
FILE_HEADER, CHUNK = 4096, 65536
_CHUNK_NUMBER = re.compile(r"chunk number (\d+)")
_MANAGEMENT_MESSAGES = {"1": "Cmdlet suceeded. Cmdlet {0}, parameters {1}",
                        "6": "Cmdlet failed. Cmdlet {0}, parameters {1}"}
#: How many consecutive parse errors end the reading of one file (a file of garbage).
MAX_CONSECUTIVE_ERRORS = 1000


def read(stream: IO[bytes], diags: FileDiagnostics, facts: FileFacts,
         admits: Callable[[str, str], bool] | None = None) -> Iterator[Record]:
    """Stream the events of one EVTX file as flattened records; with ``admits(channel, event_id)``, an event it
    refuses (no rule reads it) is counted in ``facts`` but not flattened or yielded."""
    try:
        parser = evtx.PyEvtxParser(stream, number_of_threads=1)
    except (RuntimeError, OSError) as exc:
        diags.add("EXH-R010", f"not a readable EVTX file: {exc}")
        return
    records = parser.records_json()
    failures = 0
    while failures < MAX_CONSECUTIVE_ERRORS:
        try:
            item = next(records)
        except StopIteration:
            return
        except (RuntimeError, OSError, ValueError) as exc:
            failures += 1
            diags.add("EXH-R010", _describe(exc), offset=_offset(exc))
            continue
        failures = 0
        parsed = _record(item, diags, admits)
        if parsed is None:
            continue
        record, admitted = parsed
        facts.records += 1
        facts.saw_time(record.time)
        facts.saw_part(record.fields.get("Channel", "?"), record.time)
        computer = record.fields.get("Computer")
        if computer:
            facts.servers[computer.split(".")[0]] += 1
        if admitted:
            yield record
    diags.add("EXH-R010", f"stopped after {MAX_CONSECUTIVE_ERRORS} consecutive parse errors")


def _describe(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _offset(exc: Exception) -> int | None:
    match = _CHUNK_NUMBER.search(str(exc))
    return FILE_HEADER + int(match.group(1)) * CHUNK if match else None


def _record(item: Mapping[str, Any], diags: FileDiagnostics, admits: Callable[[str, str], bool] | None
            ) -> tuple[Record, bool] | None:
    """The record of one event, and whether ``admits`` it (if not: its System fields only)."""
    number = int(item.get("event_record_id") or 0)
    try:
        event = json.loads(item["data"]).get("Event", {})
    except (ValueError, TypeError, AttributeError) as exc:
        diags.add("EXH-R010", f"record {number}: unreadable event data: {exc}", number)
        return None
    header, counted = event.get("System") or {}, {}
    _system(header, counted, _COUNTED)
    moment = parse_system_time(counted.get("TimeCreated", ""))
    if moment is None:
        diags.add("EXH-R005", f"record {number}: no usable TimeCreated", number)
    if admits is not None and not admits(counted.get("Channel", ""), counted.get("EventID", "")):
        return Record(number, moment, counted, ""), False
    fields: dict[str, str] = {}
    _system(header, fields)
    system = frozenset(fields)
    _items(event.get("EventData"), fields, system, "EventData")
    _items(event.get("UserData"), fields, system, "UserData")
    _security_aliases(fields)
    message = _management_message(fields)
    raw = "\n".join(([message] if message else []) + [v for v in fields.values() if v])
    return Record(number, moment, fields, raw), True


#: The System elements that say which log and event a record is, when and where it was written.
_COUNTED = ("Channel", "EventID", "TimeCreated", "Computer")


def _system(system: Mapping[str, Any], fields: dict[str, str], keys: tuple[str, ...] | None = None) -> None:
    """Flatten the System elements (only ``keys``, if given): values and ``<element>_<attribute>``."""
    for key, value in system.items() if keys is None else ((key, system.get(key)) for key in keys):
        if isinstance(value, dict):
            attributes = value.get("#attributes") or {}
            if "#text" in value:
                fields[key] = _text(value["#text"])
            for name, attribute in attributes.items():
                fields[f"{key}_{name}"] = _text(attribute)
        elif value is not None:
            fields[key] = _text(value)
    if "TimeCreated_SystemTime" in fields:
        fields["TimeCreated"] = fields["TimeCreated_SystemTime"]


def _items(items: Any, fields: dict[str, str], system: frozenset[str], section: str) -> None:
    """Flatten EventData/UserData (``section``): named items by name, unnamed ``Data`` as ``Data[i]``."""
    if not isinstance(items, dict):
        return
    for key, value in items.items():
        if key == "#attributes":
            continue
        if key == "Data":
            _data(value, fields, system, section)
        elif isinstance(value, dict):
            _items(value, fields, system, section)
        else:
            _put(fields, key, _text(value), system, section)


def _data(value: Any, fields: dict[str, str], system: frozenset[str], section: str) -> None:
    entries = value if isinstance(value, list) else [value]
    texts: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):
            name = (entry.get("#attributes") or {}).get("Name")
            text = entry.get("#text")
            if name:
                _put(fields, str(name), _text(text), system, section)
                continue
            texts.extend(_text(t) for t in (text if isinstance(text, list) else [text]))
        else:
            texts.append(_text(entry))
    for index, text in enumerate(texts):
        fields[f"Data[{index}]"] = text


def _put(fields: dict[str, str], name: str, value: str, system: frozenset[str], section: str) -> None:
    """An item's value under its name, or under ``<section>_<name>`` when a System field has that name."""
    fields[f"{section}_{name}" if name in system else name] = value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


#: Security 4688 names -> the Sysmon/Sigma ``process_creation`` names (Sigma's Windows audit mapping).
_PROCESS_ALIASES = {"NewProcessName": "Image", "ParentProcessName": "ParentImage", "SubjectUserName": "User"}


def _security_aliases(fields: dict[str, str]) -> None:
    if fields.get("Channel") == "Security" and fields.get("EventID") == "4688":
        for name, alias in _PROCESS_ALIASES.items():
            if name in fields and alias not in fields:
                fields[alias] = fields[name]


def _management_message(fields: dict[str, str]) -> str:
    if fields.get("Channel") != "MSExchange Management" or "Data[0]" not in fields:
        return ""
    template = _MANAGEMENT_MESSAGES.get(fields.get("EventID", ""))
    fields["CmdletName"] = fields["Data[0]"]
    fields["CmdletParameters"] = fields.get("Data[1]", "")
    if template:
        fields["Message"] = template.format(fields["CmdletName"], fields["CmdletParameters"])
    return fields.get("Message", "")


_SYSTEM_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z?$")


def parse_system_time(text: str) -> datetime | None:
    """Parse ``SystemTime`` values with 0-9 fractional digits as UTC."""
    match = _SYSTEM_TIME.match(text.strip())
    if not match:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    try:
        base = datetime.fromisoformat(match.group(1))
    except ValueError:
        return None
    return base.replace(microsecond=int(fraction), tzinfo=UTC)

"""Deterministic writer of Windows XML Event Log (``.evtx``) files.

:func:`write_evtx` turns a sequence of :class:`Event` into the bytes of a complete log
that real parsers read: a 4 KiB ``ElfFile`` header, then 64 KiB ``ElfChnk`` chunks with
valid CRC32s, a common-string table and records (``**\\0\\0``, size, id, FILETIME, Binary
XML, size again). Records never cross a chunk boundary.

Each record's Binary XML is a fragment holding one template instance whose definition is
stored inline (as Windows does on a template's first use) and carries the whole event as
literal text: no substitution values. This keeps the encoding simple while matching the
layout all common readers expect (element starts inside a template definition carry the
dependency identifier that libevtx and python-evtx always read and the Rust ``evtx``
crate reads only there). Names are stored inline on first use in a chunk, listed in the
chunk's string table and referenced by offset afterwards. All values are UTF-16LE string
values, so ``<``, ``&`` and quotes are data, escaped only by the reader's XML renderer.

Format facts follow libyal's "Windows XML Event Log (EVTX) format" and [MS-EVEN6].
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"

FILE_HEADER_SIZE = 4096
CHUNK_SIZE = 65536
CHUNK_HEADER_SIZE = 512
RECORD_OVERHEAD = 28  # signature, size, id, FILETIME before the Binary XML; size copy after

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_STRING_BUCKETS = 64
_NAME_HASH_MULTIPLIER = 65599
_FRAGMENT_HEADER = b"\x0f\x01\x01\x00"

# Binary XML tokens ([MS-EVEN6] 3.1.4.7); 0x40 on a start/attribute token means "more follows".
_TOKEN_EOF = 0x00
_TOKEN_OPEN_START = 0x01
_TOKEN_CLOSE_START = 0x02
_TOKEN_CLOSE_EMPTY = 0x03
_TOKEN_END_ELEMENT = 0x04
_TOKEN_VALUE = 0x05
_TOKEN_ATTRIBUTE = 0x06
_TOKEN_TEMPLATE_INSTANCE = 0x0C
_FLAG_MORE = 0x40
_VALUE_STRING = 0x01
_NO_DEPENDENCY = 0xFFFF


@dataclass(frozen=True, slots=True)
class Event:
    """One event record; fields map to ``Event/System`` and ``Event/EventData``."""

    provider: str
    event_id: int
    channel: str
    computer: str
    time: datetime
    record_id: int
    level: int = 4
    data: tuple[tuple[str | None, str], ...] = ()
    qualifiers: int | None = None
    provider_guid: str | None = None


@dataclass(frozen=True, slots=True)
class _Element:
    """An XML element with string attributes and either text or child elements."""

    name: str
    attributes: tuple[tuple[str, str], ...] = ()
    children: tuple[_Element, ...] = ()
    text: str | None = None


def write_evtx(events: Sequence[Event]) -> bytes:
    """The bytes of an ``.evtx`` file holding ``events`` in order.

    Record ids must be positive and strictly increasing and every ``time`` tz-aware;
    an event too large for one chunk raises :class:`ValueError`.
    """
    _check_record_ids(events)
    chunks = _pack_chunks(events)
    if len(chunks) > 0xFFFF:
        raise ValueError(f"{len(chunks)} chunks exceed the 65535 an EVTX file header can count")
    next_record_id = events[-1].record_id + 1 if events else 1
    return _file_header(len(chunks), next_record_id) + b"".join(chunks)


def _check_record_ids(events: Sequence[Event]) -> None:
    """Raise unless record ids are positive and strictly increasing (readers rely on it)."""
    previous = 0
    for event in events:
        if event.record_id <= previous:
            raise ValueError(f"record id {event.record_id} is not positive and above {previous}")
        previous = event.record_id


def _pack_chunks(events: Sequence[Event]) -> list[bytes]:
    """Fill chunks in order, opening a new one when a record does not fit."""
    chunks: list[bytes] = []
    chunk = _Chunk()
    for event in events:
        if chunk.add(event):
            continue
        if chunk.record_ids:
            chunks.append(chunk.finish())
            chunk = _Chunk()
        if not chunk.add(event):
            raise ValueError(f"event record {event.record_id} does not fit in one 64 KiB chunk")
    if chunk.record_ids:
        chunks.append(chunk.finish())
    return chunks


def _file_header(chunk_count: int, next_record_id: int) -> bytes:
    """The 4096-byte ``ElfFile`` header (format 3.1, clean) with its CRC32."""
    last_chunk = max(chunk_count - 1, 0)
    head = struct.pack("<8sQQQIHHHH", b"ElfFile\x00", 0, last_chunk, next_record_id, 128, 1, 3, 4096, chunk_count)
    head = head.ljust(120, b"\x00")
    flags = struct.pack("<I", 0)  # not dirty, not full
    return (head + flags + struct.pack("<I", zlib.crc32(head))).ljust(FILE_HEADER_SIZE, b"\x00")


class _Chunk:
    """One 64 KiB chunk being filled with records."""

    def __init__(self) -> None:
        self.data = bytearray(CHUNK_HEADER_SIZE)
        self.names: dict[str, int] = {}
        self.buckets = [0] * _STRING_BUCKETS
        self.record_ids: list[int] = []
        self.last_record_offset = 0

    def add(self, event: Event) -> bool:
        """Append the record of ``event`` if it fits; the chunk is unchanged otherwise."""
        offset = len(self.data)
        encoder = _Encoder(offset + 24, dict(self.names), list(self.buckets))
        binxml = encoder.record(_event_tree(event))
        size = RECORD_OVERHEAD + len(binxml)
        if offset + size > CHUNK_SIZE:
            return False
        header = struct.pack("<4sIQQ", b"\x2a\x2a\x00\x00", size, event.record_id, _filetime(event.time))
        self.data += header + binxml + struct.pack("<I", size)
        self.names, self.buckets = encoder.names, encoder.buckets
        self.record_ids.append(event.record_id)
        self.last_record_offset = offset
        return True

    def finish(self) -> bytes:
        """The chunk bytes: header with record range, offsets, tables and CRC32s, zero padded."""
        first, last = self.record_ids[0], self.record_ids[-1]
        free_offset = len(self.data)
        events_crc = zlib.crc32(self.data[CHUNK_HEADER_SIZE:])
        numbers = (first, last, first, last)  # record numbers, then identifiers: the same here
        offsets = (128, self.last_record_offset, free_offset)
        head = struct.pack("<8s4Q3II", b"ElfChnk\x00", *numbers, *offsets, events_crc)
        head = head.ljust(120, b"\x00")
        flags = struct.pack("<I", 0)
        tables = struct.pack(f"<{_STRING_BUCKETS}I", *self.buckets).ljust(CHUNK_HEADER_SIZE - 128, b"\x00")
        header = head + flags + struct.pack("<I", zlib.crc32(head + tables)) + tables
        return (header + self.data[CHUNK_HEADER_SIZE:]).ljust(CHUNK_SIZE, b"\x00")


class _Encoder:
    """Binary XML writer for one record; knows where its output lands in the chunk."""

    def __init__(self, base: int, names: dict[str, int], buckets: list[int]) -> None:
        self.base = base
        self.names = names
        self.buckets = buckets
        self.out = bytearray()

    @property
    def offset(self) -> int:
        """Chunk-relative offset of the next byte written."""
        return self.base + len(self.out)

    def record(self, root: _Element) -> bytes:
        """Fragment header plus a template instance whose inline definition holds ``root``."""
        self.out += _FRAGMENT_HEADER
        self.out += bytes((_TOKEN_TEMPLATE_INSTANCE, 0x01))
        instance_at = len(self.out)
        self.out += struct.pack("<II", 0, self.offset + 8)  # template id (patched), definition offset
        definition_at = len(self.out)
        self.out += bytes(24)  # next definition offset, GUID, data size (patched below)
        body_at = len(self.out)
        self.out += _FRAGMENT_HEADER
        self.element(root)
        self.out.append(_TOKEN_EOF)
        guid = hashlib.blake2b(repr(root).encode(), digest_size=16).digest()
        struct.pack_into("<I16sI", self.out, definition_at, 0, guid, len(self.out) - body_at)
        self.out[instance_at : instance_at + 4] = guid[:4]
        self.out += struct.pack("<IB", 0, _TOKEN_EOF)  # no substitution values; end of document
        return bytes(self.out)

    def element(self, element: _Element) -> None:
        """An element start (with dependency id), attributes, then content or ``/>``."""
        start = len(self.out)
        flag = _FLAG_MORE if element.attributes else 0
        self.out += struct.pack("<BHI", _TOKEN_OPEN_START | flag, _NO_DEPENDENCY, 0)
        self.name(element.name)
        if element.attributes:
            self.attributes(element.attributes)
        if element.children or element.text:
            self.out.append(_TOKEN_CLOSE_START)
            for child in element.children:
                self.element(child)
            if element.text:
                self.value(element.text)
            self.out.append(_TOKEN_END_ELEMENT)
        else:
            self.out.append(_TOKEN_CLOSE_EMPTY)
        struct.pack_into("<I", self.out, start + 3, len(self.out) - start - 7)

    def attributes(self, attributes: tuple[tuple[str, str], ...]) -> None:
        """The attribute list: its byte size, then one attribute token and value each."""
        size_at = len(self.out)
        self.out += bytes(4)
        for index, (name, text) in enumerate(attributes):
            more = _FLAG_MORE if index < len(attributes) - 1 else 0
            self.out.append(_TOKEN_ATTRIBUTE | more)
            self.name(name)
            self.value(text)
        struct.pack_into("<I", self.out, size_at, len(self.out) - size_at - 4)

    def value(self, text: str) -> None:
        """A string value token: type 0x01, UTF-16 unit count, UTF-16LE text."""
        encoded = text.encode("utf-16-le")
        if len(encoded) // 2 > 0xFFFF:
            raise ValueError(f"value of {len(encoded) // 2} UTF-16 units exceeds 65535")
        self.out += struct.pack("<BBH", _TOKEN_VALUE, _VALUE_STRING, len(encoded) // 2) + encoded

    def name(self, name: str) -> None:
        """A name reference: the offset of a name already in the chunk, or the name inline."""
        known = self.names.get(name)
        if known is not None:
            self.out += struct.pack("<I", known)
            return
        at = self.offset + 4
        name_hash = _name_hash(name)
        bucket = name_hash % _STRING_BUCKETS
        encoded = name.encode("utf-16-le")
        self.out += struct.pack("<IIHH", at, self.buckets[bucket], name_hash, len(encoded) // 2)
        self.out += encoded + b"\x00\x00"
        self.names[name] = at
        self.buckets[bucket] = at


def _event_tree(event: Event) -> _Element:
    """The ``<Event>`` element of ``event`` in Windows' element order."""
    provider = (("Name", event.provider),)
    if event.provider_guid is not None:
        provider += (("Guid", event.provider_guid),)
    event_id = () if event.qualifiers is None else (("Qualifiers", str(event.qualifiers)),)
    system = (
        _Element("Provider", provider),
        _Element("EventID", event_id, text=str(event.event_id)),
        _Element("Level", text=str(event.level)),
        _Element("TimeCreated", (("SystemTime", _system_time(event.time)),)),
        _Element("EventRecordID", text=str(event.record_id)),
        _Element("Channel", text=event.channel),
        _Element("Computer", text=event.computer),
    )
    data = tuple(_Element("Data", () if name is None else (("Name", name),), text=text) for name, text in event.data)
    return _Element(
        "Event", (("xmlns", EVENT_NS),), (_Element("System", children=system), _Element("EventData", children=data))
    )


def _name_hash(name: str) -> int:
    """The 16-bit name hash of [MS-EVEN6]: ``h = h * 65599 + unit`` over UTF-16 units."""
    value = 0
    for (unit,) in struct.iter_unpack("<H", name.encode("utf-16-le")):
        value = (value * _NAME_HASH_MULTIPLIER + unit) & 0xFFFFFFFF
    return value & 0xFFFF


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; naive datetimes are rejected."""
    if moment.tzinfo is None:
        raise ValueError(f"event time {moment} is naive; give a tz-aware UTC datetime")
    return moment.astimezone(UTC)


def _filetime(moment: datetime) -> int:
    """100-ns intervals since 1601-01-01 UTC."""
    delta = _utc(moment) - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def _system_time(moment: datetime) -> str:
    """``TimeCreated/@SystemTime`` text with seven fractional digits, e.g. ``...42.1620000Z``."""
    utc = _utc(moment)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}0Z"

"""Bounded, lenient line reading shared by the text-log readers."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Protocol

from exhunt.diagnostics import FileDiagnostics

#: Physical lines of a text file as (1-based line number, text without terminator).
Lines = Iterable[tuple[int, str]]

#: Longest line kept, in bytes; the rest of a longer line is dropped with a diagnostic.
MAX_LINE = 1 << 20

_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class LineSource(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def iter_lines(stream: IO[bytes] | LineSource, diags: FileDiagnostics,
               limit: int = MAX_LINE) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each physical line, without line terminators.

    Never holds more than ``limit`` bytes of one line; a UTF-8 BOM is dropped, a UTF-16
    file is decoded as such, and undecodable bytes are replaced, each with a diagnostic.
    """
    first = stream.readline(limit)
    if first[:2] in _UTF16_BOMS:
        diags.add("EXH-R009", "UTF-16 byte-order mark at the start of the file")
        yield from _iter_utf16(first, stream, diags)
        return
    if first.startswith(_UTF8_BOM):
        first = first[len(_UTF8_BOM):]
    number = 0
    chunk = first
    while chunk:
        number += 1
        if not chunk.endswith(b"\n"):
            if len(chunk) >= limit:
                diags.add("EXH-R007", f"line longer than {limit} bytes was cut", number)
                _drain(stream, limit)
            else:
                diags.add("EXH-R006", "last line has no line terminator", number)
        yield number, decode_line(chunk, diags, number)
        chunk = stream.readline(limit)


def decode_line(raw: bytes, diags: FileDiagnostics, number: int) -> str:
    """One raw line as text without its line end; invalid UTF-8 is replaced and reported (EXH-R003)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        diags.add("EXH-R003", "invalid UTF-8 replaced", number)
        text = raw.decode("utf-8", "replace")
    return text.rstrip("\r\n")


def _drain(stream: IO[bytes] | LineSource, limit: int) -> None:
    while True:
        more = stream.readline(limit)
        if not more or more.endswith(b"\n"):
            return


def _iter_utf16(first: bytes, stream: IO[bytes] | LineSource,
                diags: FileDiagnostics) -> Iterator[tuple[int, str]]:
    decoder = codecs.getincrementaldecoder("utf-16")("replace")
    pending = ""
    number = 0
    chunk = first
    while chunk:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for text in complete:
            number += 1
            yield number, text.rstrip("\r")
        if len(pending) > MAX_LINE:
            number += 1
            diags.add("EXH-R007", "line too long was cut", number)
            yield number, pending[:MAX_LINE]
            pending = ""
        chunk = stream.read(1 << 16)
    pending += decoder.decode(b"", final=True)
    if pending.strip("\r\x00"):
        number += 1
        yield number, pending.rstrip("\r")


def directive(text: str) -> tuple[str, str]:
    """Split a ``#Name: value`` directive line into its lower-cased name and stripped value."""
    name, _, value = text[1:].partition(":")
    return name.strip().lower(), value.strip()


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$")


def parse_iso_utc(text: str) -> datetime | None:
    """Parse Exchange's ``2021-03-03T06:49:42.162Z``; ``None`` if it is not that shape."""
    if not _ISO.match(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC)

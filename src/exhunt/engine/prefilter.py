"""Find the lines worth parsing by scanning raw bytes for every rule's literals at once.

The literals of a source kind's rules (:mod:`exhunt.engine.literals`) are compiled into one
Hyperscan database (case-insensitive). A file is read in large chunks cut at line boundaries;
each chunk is scanned in one call, and only the lines holding a literal are decoded and handed
to the reader, together with every directive/header line (``#...``, a bare ``DateTime,`` /
``TimeStamp,`` column line) and the first and last data line, so that column mapping, builds
and time spans stay right. Everything else is counted, not parsed.
"""

from __future__ import annotations

import codecs
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import IO

import hyperscan

from exhunt.diagnostics import FileDiagnostics
from exhunt.readers.lines import MAX_LINE, decode_line, iter_lines

#: Bytes read per scan call.
CHUNK = 8 << 20
#: Lines the reader always sees: directives, bare column-name lines and blank lines.
_STRUCTURE = (rb"(?m)^#", rb'(?m)^"?(DateTime|TimeStamp)"?,', rb"\n\r?\n")
_BARE_HEADER = re.compile(r'^"?(DateTime|TimeStamp)"?,')
#: The start of a line that is not the first data line: a directive, a bare column-name line or a blank line.
_NOT_DATA = re.compile(rb'#|"?(?:DateTime|TimeStamp)"?,|\r?\n')


def _is_header(text: str) -> bool:
    """A directive or a bare column-name line."""
    return text.startswith("#") or _BARE_HEADER.match(text) is not None


def _escape(literal: str) -> bytes:
    return b"".join(b"\\x%02x" % byte for byte in literal.encode("utf-8"))


class Prefilter:
    """A compiled literal set; :meth:`lines` yields the candidate lines of one file."""

    def __init__(self, literals: Iterable[str]) -> None:
        self.literals = tuple(sorted(set(literals)))
        expressions = [_escape(lit) for lit in self.literals] + list(_STRUCTURE)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(
            expressions=expressions,
            ids=list(range(len(expressions))),
            elements=len(expressions),
            flags=[hyperscan.HS_FLAG_CASELESS] * len(self.literals)
            + [hyperscan.HS_FLAG_MULTILINE] * len(_STRUCTURE),
        )

    def lines(self, stream: IO[bytes], diags: FileDiagnostics, counts: LineCounts,
              part: Part | None = None) -> Iterator[tuple[int, str]]:
        """Candidate ``(line number, text)`` pairs of ``stream``; ``counts`` gets the totals.

        With ``part``, ``stream`` is one line-aligned byte range of a larger file: the header
        lines before it come first (not counted), and line numbers continue from before it.
        """
        if part is not None and part.start > 0:
            yield from part.context
            yield from self._scan(stream.read(CHUNK), stream, diags, counts, part.lines_before, part_start=True)
            return
        head = stream.read(CHUNK)
        if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            counts.full = True  # not what Exchange writes: decode everything the slow way
            yield from iter_lines(_Prepended(head, stream), diags)
            return
        if head.startswith(codecs.BOM_UTF8):
            head = head[len(codecs.BOM_UTF8):]
        yield from self._scan(head, stream, diags, counts)

    def _scan(self, head: bytes, stream: IO[bytes], diags: FileDiagnostics, counts: LineCounts,
              lines_before: int = 0, part_start: bool = False) -> Iterator[tuple[int, str]]:
        carry, number, chunk, yielded = b"", lines_before, head, lines_before
        seen_data = lines_before > 0 or part_start
        last: tuple[int, bytes] | None = None
        while chunk or carry:
            cut = chunk.rfind(b"\n") + 1 if chunk else len(chunk)
            if cut == 0 and chunk and len(carry) + len(chunk) > MAX_LINE:  # a line too long to hold: cut it
                diags.add("EXH-R007", f"line longer than {MAX_LINE} bytes was cut", number + 1)
                data = (carry + chunk)[:MAX_LINE] + b"\n"
                chunk, carry = _skip_line(stream), b""
            elif cut == 0 and chunk:  # no line end yet: keep reading
                carry += chunk
                chunk = stream.read(CHUNK)
                continue
            else:
                data = carry + chunk[:cut] if carry else chunk[:cut] if cut < len(chunk) else chunk
                carry = chunk[cut:]
                chunk = stream.read(CHUNK) if chunk else b""
                if not chunk and carry:  # the file ends without a line end
                    data, carry = data + carry, b""
            if not data:
                continue
            line, previous = number + 1, 0
            for start, end in self._candidates(data, number == 0 and lines_before == 0):
                line += data.count(b"\n", previous, start)
                previous = start
                text = decode_line(data[start:end], diags, line)
                header = _is_header(text)
                if not text or header:
                    counts.directives += 1  # every such line is a candidate: not a data line
                if header and seen_data:
                    counts.late_headers += 1
                seen_data = seen_data or not (header or not text)
                yield line, text
                yielded = line
            lines_here = line - number - 1 + data.count(b"\n", previous) + (0 if data.endswith(b"\n") else 1)
            counts.physical += lines_here
            tail_start = data.rfind(b"\n", 0, len(data) - 1) + 1
            last = (number + lines_here, data[tail_start:])
            number += lines_here
        if last is None:
            return
        if not last[1].endswith(b"\n"):
            diags.add("EXH-R006", "last line has no line terminator", last[0])
        if last[0] > yielded:
            yield last[0], decode_line(last[1], diags, last[0])

    def _candidates(self, data: bytes, first_chunk: bool) -> list[tuple[int, int]]:
        ends: list[int] = []
        self._db.scan(data, match_event_handler=_collector(ends))
        if first_chunk:
            ends.append(_first_data_line_end(data))
        spans: dict[int, int] = {}
        for to in ends:
            start = data.rfind(b"\n", 0, max(to - 1, 0)) + 1 if to else 0
            if start not in spans:
                end = data.find(b"\n", max(to - 1, start))
                spans[start] = len(data) if end < 0 else end + 1
        return sorted(spans.items())


@dataclass(frozen=True, slots=True)
class Part:
    """A line-aligned byte range of a file, with what a reader must know from before it."""

    start: int
    end: int
    lines_before: int = 0
    context: tuple[tuple[int, str], ...] = ()


def cut_points(stream: IO[bytes], size: int, parts: int) -> list[tuple[int, int]]:
    """About ``parts`` line-aligned ``(start, end)`` byte ranges of a seekable file."""
    cuts = [0]
    for index in range(1, parts):
        stream.seek(index * size // parts)
        stream.readline()
        position = stream.tell()
        if cuts[-1] < position < size:
            cuts.append(position)
    cuts.append(size)
    stream.seek(0)
    return list(itertools.pairwise(cuts))


def part_of(stream: IO[bytes], start: int, end: int) -> Part:
    """The range ``[start, end)`` with the header lines and line count before it, found at scan speed."""
    structure = _structure_db()
    number, context = 0, []
    stream.seek(0)
    position = 0
    while position < start:
        block = stream.read(min(CHUNK, start - position))
        if not block:
            break
        if not block.endswith(b"\n") and position + len(block) < start:
            block += stream.readline()  # keep blocks line-aligned (``start`` is)
        position += len(block)
        hits: list[int] = []
        structure.scan(block, match_event_handler=_collector(hits))
        for to in sorted(set(hits)):
            begin = block.rfind(b"\n", 0, max(to - 1, 0)) + 1
            stop = block.find(b"\n", begin)
            text = block[begin:None if stop < 0 else stop].decode("utf-8", "replace").rstrip("\r")
            context.append((number + block.count(b"\n", 0, begin) + 1, text))
        number += block.count(b"\n")
    stream.seek(start)
    return Part(start, end, number, tuple(context))


def top_of(stream: IO[bytes], start: int, end: int) -> Part:
    """The range ``[start, end)`` with the file's top header block as context, numbered from 0.

    Cheap; right unless an earlier part holds header lines of its own, which that part's
    ``LineCounts.late_headers`` tells (the caller then reads this part again with :func:`part_of`).
    """
    stream.seek(0)
    context = []
    for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE), b""), 1):
        text = raw.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
        if text and not _is_header(text):
            break
        context.append((number, text))
        if stream.tell() >= start:
            break
    stream.seek(start)
    return Part(start, end, 0, tuple(line for line in context if line[1]))


def _collector(hits: list[int]) -> Callable[[int, int, int, int, object], None]:
    """A Hyperscan match handler that records each match's end offset."""

    def collect(_id: int, _from: int, to: int, _flags: int, _context: object) -> None:
        hits.append(to)

    return collect


@cache
def _structure_db() -> hyperscan.Database:
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=list(_STRUCTURE), ids=list(range(len(_STRUCTURE))), elements=len(_STRUCTURE),
               flags=[hyperscan.HS_FLAG_MULTILINE] * len(_STRUCTURE))
    return db


@dataclass
class LineCounts:
    """Totals of one prefiltered file: physical lines, directive lines, and whether all were read."""

    physical: int = 0
    directives: int = 0
    full: bool = False
    #: Header lines (``#...``, bare column names) after the first data line.
    late_headers: int = 0

    @property
    def data_lines(self) -> int:
        return self.physical - self.directives


def _first_data_line_end(data: bytes) -> int:
    position = 0
    while position < len(data) and _NOT_DATA.match(data, position):
        position = data.find(b"\n", position) + 1 or len(data)
    return min(position + 1, len(data))


def _skip_line(stream: IO[bytes]) -> bytes:
    """Drop the rest of an over-long line; return what follows it in the next read."""
    while True:
        block = stream.read(CHUNK)
        if not block:
            return b""
        cut = block.find(b"\n")
        if cut >= 0:
            return block[cut + 1:]


class _Prepended:
    """A stream whose first bytes were already read (for the UTF-16 fallback)."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head, self._stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            taken, self._head = (self._head, b"") if size < 0 else (self._head[:size], self._head[size:])
            return taken
        return self._stream.read(size)

    def readline(self, size: int = -1) -> bytes:
        if self._head:
            cut = self._head.find(b"\n") + 1 or len(self._head)
            cut = cut if size < 0 else min(cut, size)
            line, self._head = self._head[:cut], self._head[cut:]
            if line.endswith(b"\n") or (size >= 0 and len(line) >= size) or self._head:
                return line
            return line + self._stream.readline(-1 if size < 0 else size - len(line))
        return self._stream.readline(size)

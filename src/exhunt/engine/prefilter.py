"""Find the lines worth parsing by scanning raw bytes for every rule's literals at once.

The literals of a source kind's rules (:mod:`exhunt.engine.literals`) are compiled into one Hyperscan
database (case-insensitive; the literals of values tested after percent-decoding also in every
percent-encoded form, found as :data:`~exhunt.engine.literals.ENCODED`). A file is read into one reused
1 MiB buffer, a window of whole lines at a time; each window is scanned in one call and its line ends
counted with numpy, and only the lines holding a literal are decoded and handed to the reader, together
with every directive/header line (``#...``, a bare ``DateTime,`` / ``TimeStamp,`` column line) and the
first and last data line, so that column mapping, builds and time spans stay right. In HttpProxy,
Rps_Http and IIS logs a line is skipped too when each hit lies in a field value (a quote-free CSV cell,
an IIS token) that rules out every rule its literal selects (``/owa/auth/logon.aspx`` for the web-shell
rules), in IIS logs also when the line's fields do (``judge``). Everything else is counted, not parsed.
The literals found in each line handed on go to the consumer (:class:`LineHits`), which picks the rules
to evaluate from them.
"""

from __future__ import annotations

import codecs
import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import IO

import hyperscan
import numpy as np

from exhunt.diagnostics import FileDiagnostics
from exhunt.engine.literals import ENCODED
from exhunt.readers.lines import MAX_LINE, decode_line, iter_lines

#: Bytes read per scan call: small enough that the window stays in the core's cache for the literal
#: scan and the newline count after the read (1 MiB: 0.36 s/GiB against 0.48 s with 8 MiB), and the
#: longest line kept (``MAX_LINE``) fits.
CHUNK = MAX_LINE
_NEWLINE = ord("\n")
#: A hit's end offset.
_END = itemgetter(1)
#: Hit ids of a window's first line when it is a structure line, and of a file's first data line.
_FIRST_LINE, _FIRST_DATA = -1, -2
#: Bytes of a file read before the literals ``wanted`` refused in it are left out of the Hyperscan
#: database (compiling one costs up to ~0.1 s with thousands of pivot values).
_RECOMPILE_AFTER = 64 << 20
#: Cell verdicts kept per prefilter, and the longest cell kept (bounded memory).
_VERDICTS, _VERDICT_CHARS = 1 << 16, 512
#: Lines the reader always sees: directives, bare column-name lines and blank lines.
#: A line end and the first byte of a line that may be structure: a directive, a quoted or bare column-name
#: line (``DateTime,`` / ``TimeStamp,``), a blank line. It selects a few data lines too (the reader sees them
#: as data); one character class scans faster than several anchored patterns. A window's first line is
#: checked with ``_NOT_DATA``.
_STRUCTURE = rb'\n[#"\r\nDT]'
#: The only characters that Python lowers to ASCII letters (KELVIN SIGN -> k, CAPITAL I WITH DOT ABOVE -> i
#: and a combining dot), which a caseless byte search cannot see as those letters: a line holding one is handed
#: on, and the rules to evaluate on it are picked from its lowered text.
_LOWERS_TO_ASCII = rb"\xe2\x84\xaa|\xc4\xb0"
_BARE_HEADER = re.compile(r'^(?:DateTime|TimeStamp|"DateTime"|"TimeStamp")(?:,|$)')
#: The start of a line that is not the first data line: a directive, a bare column-name line or a blank line.
_NOT_DATA = re.compile(rb'#|(?:DateTime|TimeStamp|"DateTime"|"TimeStamp")(?:,|\r?\n|$)|\r?\n')


def _is_header(text: str) -> bool:
    """A directive or a bare column-name line."""
    return text.startswith("#") or _BARE_HEADER.match(text) is not None


def _escape(literal: str) -> bytes:
    return b"".join(b"\\x%02x" % byte for byte in literal.encode("utf-8"))


#: Characters that Python lowers to an ASCII letter, by that letter (UTF-8).
_LOWERED_TO = {"k": ("\u212a".encode(),), "i": ("\u0130".encode(),)}


def _encoded_form(literal: str) -> bytes:
    """A pattern (caseless) of ``literal`` with any of its characters written as it is or as a percent escape of
    either case (hex digits of either case) of the character, which ``urllib.parse.unquote`` turns into it;
    ``k`` and ``i`` also as the escapes of KELVIN SIGN and CAPITAL I WITH DOT ABOVE (Python lowers them to those)."""
    pattern = b""
    for char in literal:
        codes = {char.lower().encode(), char.upper().encode(), *_LOWERED_TO.get(char.lower(), ())}
        escapes = b"|".join(b"".join(b"%%%02x" % byte for byte in code) for code in sorted(codes))
        pattern += b"(?:%s|%s)" % (_escape(char), escapes)
    return pattern


def _shortest(literals: Iterable[str]) -> tuple[str, ...]:
    """The literals without those that hold another one (a line holding them holds the shorter one too)."""
    unique = sorted(set(literals), key=len)
    kept: list[str] = []
    for literal in unique:
        if not any(shorter in literal for shorter in kept):
            kept.append(literal)
    return tuple(sorted(kept))


class Prefilter:
    """A compiled literal set; :meth:`lines` yields the candidate lines of one file."""

    def __init__(self, literals: Iterable[str], benign: Callable[[str, str], bool] | None = None,
                 cells: Callable[[str], list[str]] | None = None, separator: bytes = b",",
                 header: Callable[[str], tuple[str, ...] | None] | None = None,
                 judge: Callable[[tuple[str, ...], tuple[str, ...], str], bool] | None = None,
                 encoded: Iterable[str] = ()) -> None:
        """``benign(literal, piece)``, for logs whose field values are pieces of the line between
        ``separator`` bytes (``literals.CELLS``): whether a hit of ``literal`` inside that piece selects no
        rule (a line whose every hit is benign is then not a candidate); ``cells`` splits a CSV line that
        holds quotes into its values as the reader does. For a line its pieces do not decide:
        ``judge(literals, fields, line)``, whether no rule those literals select can match the line under
        the field names ``fields``, which the last header line set (``header(line)``: the names a
        header line sets, ``None`` for other lines). The pseudo-literal :data:`~exhunt.engine.literals.ENCODED`
        is found where one of ``encoded`` is, with any of its characters percent-encoded (with none given,
        wherever a ``%`` is)."""
        self.literals = _shortest(literals)
        # an encoded form of a literal holds one of every literal inside it: the shortest suffice
        self._encoded = [_encoded_form(literal) for literal in _shortest(encoded)] or [_escape("%")]
        self._encoded_id = self.literals.index(ENCODED) if ENCODED in self.literals else -1
        self._benign = benign
        self._cells = cells
        self._header = header
        self._judge = judge
        self._separator = separator
        #: Bytes from which on a line may not split into its values at the separator (CSV: a quote, which may
        #: hold commas; IIS: anything but printable ASCII), and bytes that make a whole CSV line one value
        #: (a NUL or a bare CR: the reader's CSV parser rejects the line).
        self._unplain = re.compile(rb'"' if separator == b"," else rb"[^\x20-\x7e]")
        self._unsplit = re.compile(rb"[\x00\r]") if separator == b"," else None
        self._lengths = [len(literal.encode("utf-8")) for literal in self.literals]
        #: Hit ids after the literals': the structure pattern's, and that of ``_LOWERS_TO_ASCII``.
        self._structure, self._unseen = len(self.literals), len(self.literals) + 1
        self._verdicts: dict[tuple[int, str], bool] = {}
        self._dbs: dict[frozenset[int], hyperscan.Database] = {}
        self._db()  # compiled now: forked workers inherit it

    @property
    def database(self) -> hyperscan.Database:
        """The compiled database of every literal (and of the structure patterns)."""
        return self._db()

    def _db(self, dead: frozenset[int] = frozenset()) -> hyperscan.Database:
        """The literals but ``dead`` ones (by index, ids kept), the structure pattern and ``_LOWERS_TO_ASCII``,
        compiled once."""
        db = self._dbs.get(dead)
        if db is None:
            patterns = [(index, pattern) for index in range(len(self.literals)) if index not in dead
                        for pattern in (self._encoded if index == self._encoded_id
                                        else (_escape(self.literals[index]),))]
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(expressions=[*(pattern for _, pattern in patterns), _STRUCTURE, _LOWERS_TO_ASCII],
                       ids=[*(index for index, _ in patterns), self._structure, self._unseen],
                       elements=len(patterns) + 2, flags=[hyperscan.HS_FLAG_CASELESS] * len(patterns) + [0, 0])
            if len(self._dbs) < 16:
                self._dbs[dead] = db
        return db

    def lines(self, stream: IO[bytes], diags: FileDiagnostics, counts: LineCounts, part: Part | None = None,
              found: LineHits | None = None, wanted: Callable[[tuple[str, ...]], bool] | None = None,
              refused: frozenset[str] = frozenset()) -> Iterator[tuple[int, str]]:
        """Candidate ``(line number, text)`` pairs of ``stream``; ``counts`` gets the totals, ``found``
        the literals found in each candidate line; with ``wanted``, a line whose literals it refuses
        (asked when the line comes) is not handed on, nor lines holding only ``refused`` literals.

        With ``part``, ``stream`` is one line-aligned byte range of a larger file: the header
        lines before it come first (not counted), and line numbers continue from before it.
        """
        found = found if found is not None else LineHits()
        with _buffer() as buffer:
            filled = _read_into(stream, memoryview(buffer))
            if part is not None and part.start > 0:
                yield from part.context
                columns = None
                for _, text in part.context:
                    columns = self._columns(text, columns)
                yield from self._scan(buffer, filled, stream, diags, counts, found, wanted, refused,
                                      part.lines_before, True, columns)
                return
            if buffer[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                counts.full = True  # not what Exchange writes: decode everything the slow way
                yield from iter_lines(_Prepended(bytes(buffer[:filled]), stream), diags)
                return
            if buffer.startswith(codecs.BOM_UTF8):
                skip = len(codecs.BOM_UTF8)
                buffer[:filled - skip] = buffer[skip:filled]
                filled -= skip
            yield from self._scan(buffer, filled, stream, diags, counts, found, wanted, refused)

    def _scan(self, buffer: bytearray, filled: int, stream: IO[bytes], diags: FileDiagnostics, counts: LineCounts,
              found: LineHits, wanted: Callable[[tuple[str, ...]], bool] | None, refused: frozenset[str],
              lines_before: int = 0, part_start: bool = False,
              columns: tuple[str, ...] | None = None) -> Iterator[tuple[int, str]]:
        number, yielded = lines_before, lines_before
        seen_data = lines_before > 0 or part_start
        last: tuple[int, bytes] | None = None
        # literals ``wanted`` refused (it never takes a refusal back): not searched for any more
        dead = {index for index, literal in enumerate(self.literals) if literal in refused}
        db, searched, scanned = self._db(frozenset(dead)), len(dead), 0
        for window, size, too_long in _windows(buffer, filled, stream):
            if len(dead) > searched and scanned >= _RECOMPILE_AFTER:  # worth a database without them
                db, searched = self._db(frozenset(dead)), len(dead)
            scanned += size
            if too_long:
                diags.add("EXH-R007", f"line longer than {MAX_LINE} bytes was cut", number + 1)
            newline = np.frombuffer(window, np.uint8, size) == _NEWLINE
            lines_here = int(np.count_nonzero(newline)) + (0 if window[size - 1] == _NEWLINE else 1)
            hits = _hits(db, window, size)
            if number == 0:
                hits.append((_FIRST_DATA, _first_data_line_end(window, size)))
            line, previous = number + 1, 0
            for begin, stop, here in _hit_lines(window, size, hits):
                if dead and not (here := [hit for hit in here if hit[0] not in dead]):
                    continue
                if (self._benign or self._judge) and self._ignorable(window, begin, stop, here, columns):
                    continue
                literals = self._found(here)
                unseen = any(ident == self._unseen for ident, _ in here)  # literals may hide in it
                if wanted is not None and literals and not unseen and not wanted(literals):
                    dead.update(ident for ident, _ in here if 0 <= ident < len(self.literals))
                    continue
                line += int(np.count_nonzero(newline[previous:begin]))
                previous = begin
                text = decode_line(window[begin:stop], diags, line)
                header = _is_header(text)
                if header:
                    columns = self._columns(text, columns)
                if not text or header:
                    counts.directives += 1  # every such line is a candidate: not a data line
                if header and seen_data:
                    counts.late_headers += 1
                seen_data = seen_data or not (header or not text)
                if not unseen:
                    found.add(line, literals)
                yield line, text
                yielded = line
            counts.physical += lines_here
            number += lines_here
            last = (number, bytes(window[window.rfind(b"\n", 0, size - 1) + 1:size]))
        if last is None:
            return
        if not last[1].endswith(b"\n"):
            diags.add("EXH-R006", "last line has no line terminator", last[0])
        if last[0] > yielded:  # not a candidate, or one no rule can take
            found.add(last[0], ())
            yield last[0], decode_line(last[1], diags, last[0])

    def _found(self, hits: list[tuple[int, int]]) -> tuple[str, ...]:
        literals = self.literals
        if len(hits) == 1:  # most lines
            ident = hits[0][0]
            return (literals[ident],) if 0 <= ident < len(literals) else ()
        return tuple(sorted({literals[ident] for ident, _ in hits if 0 <= ident < len(literals)}))

    def _columns(self, line: str, columns: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """The field names in force after ``line`` (``None``: not known, as after a header without names, which
        leaves the reader to assume its defaults)."""
        if self._header is None:
            return None
        names = self._header(line)
        return columns if names is None else names or None

    def _ignorable(self, window: bytearray | bytes, begin: int, stop: int, hits: list[tuple[int, int]],
                   columns: tuple[str, ...] | None) -> bool:
        """Whether no rule the hits of the line ``window[begin:stop]`` select can match it: every hit is a
        literal in a benign piece, or ``judge`` says so from the line's fields."""
        count, pieces = len(self.literals), self._benign is not None
        for ident, _ in hits:
            if not 0 <= ident < count:
                return False  # a structure line or the first data line
            if ident == self._encoded_id:
                pieces = False  # an encoded form has no fixed length: its piece is not known
        end = stop
        while end > begin and window[end - 1] in b"\r\n":
            end -= 1
        if pieces and self._benign_pieces(window, begin, end, hits):
            return True
        if self._judge is None or columns is None:
            return False
        try:
            text = window[begin:end].decode("utf-8")
        except UnicodeDecodeError:
            return False  # the reader reports it
        return self._judge(self._found(hits), columns, text)

    def _benign_pieces(self, window: bytearray | bytes, begin: int, end: int, hits: list[tuple[int, int]]) -> bool:
        """Whether every hit of the line ``window[begin:end]`` is a literal in a benign piece. Each byte of the line
        is looked at a bounded number of times, however many hits it holds."""
        separator, unplain = self._separator, self._unplain
        # the reader does not cut a piece at the separator when a quote before its end may hold commas, or a NUL or
        # bare CR makes the CSV line one value (IIS tokens split at any white space): then split as it does, if known
        if self._unsplit is not None and self._unsplit.search(window, begin, end) is not None:
            return self._benign_split(window, begin, end, hits)
        checked = begin  # no unplain byte before this
        left = right = start_before = begin
        decided: set[tuple[int, int, int]] = set()
        for ident, to in hits:
            if to > right:  # a hit in a later piece: where it ends
                right = window.find(separator, to, end)
                right = end if right < 0 else right
            if right > checked:
                if unplain.search(window, checked, right) is not None:
                    return self._benign_split(window, begin, end, hits)
                checked = right
            first = to - self._lengths[ident]
            lower = start_before if start_before <= first else begin
            cut = window.rfind(separator, lower, first)
            left = cut + 1 if cut >= 0 else (left if lower > begin else begin)
            start_before = first
            if (ident, left, right) in decided:
                continue
            decided.add((ident, left, right))
            if not self._verdict(ident, window[left:right].decode("utf-8", "replace")):
                return False
        return True

    def _benign_split(self, window: bytearray | bytes, begin: int, end: int, hits: list[tuple[int, int]]) -> bool:
        """The same for a line that does not split at its separators: every cell holding a hit literal, as the
        reader splits the line, must be benign (never, when that split is not known)."""
        if self._cells is None:
            return False
        cells = self._cells(window[begin:end].decode("utf-8", "replace"))
        for ident in {ident for ident, _ in hits}:
            literal = self.literals[ident]
            if not all(self._verdict(ident, cell) for cell in cells if literal in cell.lower()):
                return False
        return True

    def _verdict(self, ident: int, cell: str) -> bool:
        key = (ident, cell)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._benign(self.literals[ident], cell)  # type: ignore[misc]
            if len(self._verdicts) < _VERDICTS and len(cell) <= _VERDICT_CHARS:
                self._verdicts[key] = verdict
        return verdict


@contextmanager
def _buffer() -> Iterator[bytearray]:
    """A ``CHUNK``-sized read buffer, reused across files (allocating 1 MiB per file costs more than
    scanning a small file)."""
    buffer = _FREE.pop() if _FREE else bytearray(CHUNK)
    if len(buffer) != CHUNK:
        buffer = bytearray(CHUNK)
    try:
        yield buffer
    finally:
        if len(_FREE) < 4:
            _FREE.append(buffer)


_FREE: list[bytearray] = []


def _windows(buffer: bytearray, filled: int, stream: IO[bytes]) -> Iterator[tuple[bytearray | bytes, int, bool]]:
    """``(window, size, cut)``: ``window[:size]`` is a run of whole lines (the last may lack its end).

    ``buffer`` holds ``filled`` bytes read so far and is reused for the whole file, so a yielded window
    is only valid until the next one; a line that does not fit is cut at ``MAX_LINE`` and comes alone,
    with ``cut`` set.
    """
    view = memoryview(buffer)
    while True:
        read = _read_into(stream, view[filled:]) if filled < len(buffer) else 0
        if read == 0 and filled < len(buffer):  # end of file: what is left is the last line
            if filled:
                yield buffer, filled, False
            return
        filled += read
        cut = buffer.rfind(b"\n", 0, filled) + 1
        if cut == 0 and filled < len(buffer):  # no line end yet: keep reading
            continue
        if cut == 0:  # a line too long to hold: keep its start, drop the rest
            kept = bytes(buffer[:MAX_LINE]) + b"\n"
            yield kept, len(kept), True
            rest = _skip_line(stream)
            filled = len(rest)
            buffer[:filled] = rest
            continue
        yield buffer, cut, False
        buffer[:filled - cut] = buffer[cut:filled]
        filled -= cut


def _read_into(stream: IO[bytes], target: memoryview) -> int:
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto(target) or 0
    block = stream.read(len(target))
    target[:len(block)] = block
    return len(block)


class LineHits:
    """The literals a prefilter found in each line it handed on, taken by the consumer in line order."""

    def __init__(self) -> None:
        self._queue: deque[tuple[int, tuple[str, ...]]] = deque()

    def add(self, line: int, literals: tuple[str, ...]) -> None:
        self._queue.append((line, literals))

    def take(self, line: int) -> tuple[str, ...] | None:
        """The literals found in ``line`` (dropping those of earlier lines); ``None`` if not known (a line the
        prefilter did not hand on, or a file it read without searching)."""
        queue = self._queue
        while queue and queue[0][0] < line:
            queue.popleft()
        if not queue or queue[0][0] != line:
            return None
        return queue.popleft()[1]


@dataclass(frozen=True, slots=True)
class Part:
    """Where a line-aligned part of a file starts, with what a reader must know from before it."""

    start: int
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


def part_of(stream: IO[bytes], start: int) -> Part:
    """The part from ``start`` with the header lines and line count before it, found at scan speed."""
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
        ends = {to for _, to in _hits(structure, block, len(block))}
        if position == 0 and block.startswith(codecs.BOM_UTF8):
            ends.add(len(codecs.BOM_UTF8) + 1)  # the file's first line, behind its BOM
        position += len(block)
        for to in sorted(ends):
            begin = block.rfind(b"\n", 0, max(to - 1, 0)) + 1
            stop = block.find(b"\n", begin)
            text = block[begin:None if stop < 0 else stop].decode("utf-8", "replace").rstrip("\r")
            if number == 0 and begin == 0:
                text = text.removeprefix("\ufeff")  # a BOM starts the file, not a line
            if text and not _is_header(text):
                continue
            context.append((number + block.count(b"\n", 0, begin) + 1, text))
        number += block.count(b"\n")
    stream.seek(start)
    return Part(start, number, tuple(context))


def top_of(stream: IO[bytes], start: int) -> Part:
    """The part from ``start`` with the file's top header block as context, numbered from 0.

    Cheap; right unless an earlier part holds header lines of its own, which that part's
    ``LineCounts.late_headers`` tells (the caller then reads this part again with :func:`part_of`).
    """
    stream.seek(0)
    context = []
    for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE), b""), 1):
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        text = text.removeprefix("\ufeff") if number == 1 else text  # a BOM starts the file, not a line
        if text and not _is_header(text):
            break
        context.append((number, text))
        if stream.tell() >= start:
            break
    stream.seek(start)
    return Part(start, 0, tuple(line for line in context if line[1]))


def _hit_lines(window: bytearray | bytes, size: int, hits: list[tuple[int, int]]
               ) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """The lines of ``window[:size]`` holding ``hits``, in order: their first byte, the byte after their line end
    (``size`` for a last line without one) and their hits. Each line is found once, however many hits it holds."""
    lines: list[tuple[int, int, list[tuple[int, int]]]] = []
    here: list[tuple[int, int]] = []
    line_end = -1
    for hit in sorted(hits, key=_END):
        at = hit[1] - 1  # the hit's last byte (a hit is never empty)
        if at > line_end:
            begin = window.rfind(b"\n", line_end + 1, at) + 1 or line_end + 1
            line_end = window.find(b"\n", at, size)
            here = [hit]
            if line_end < 0:
                line_end = size
                lines.append((begin, size, here))
            else:
                lines.append((begin, line_end + 1, here))
        else:
            here.append(hit)
    return lines


def _hits(db: hyperscan.Database, window: bytearray | bytes, size: int) -> list[tuple[int, int]]:
    """``(expression id, end offset)`` of the matches of ``db`` in ``window[:size]``, which starts at a
    line start (a structure line there is reported as ``_FIRST_LINE``)."""
    hits: list[tuple[int, int]] = [(_FIRST_LINE, 1)] if _NOT_DATA.match(window, 0, size) else []

    def collect(ident: int, _from: int, to: int, _flags: int, _context: object) -> None:
        hits.append((ident, to))

    db.scan(memoryview(window)[:size], match_event_handler=collect)
    return hits


@cache
def _structure_db() -> hyperscan.Database:
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[_STRUCTURE], ids=[0], elements=1, flags=[0])
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


def _first_data_line_end(data: bytearray | bytes, size: int) -> int:
    position = 0
    while position < size and _NOT_DATA.match(data, position, size):
        position = data.find(b"\n", position, size) + 1 or size
    return min(position + 1, size)


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

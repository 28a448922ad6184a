"""Streaming readers, one module per evidence format.

Every reader is a generator ``read(source, diags, facts) -> Iterator[Record]`` whose source
is the file's lines (text formats: all of them, or only the prefilter's candidates) or its
byte stream (EVTX). It never raises for bad input (problems go to ``diags``) and notes what
it learns about the file (time span, Exchange builds, server names) in ``facts``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from exhunt.diagnostics import FileDiagnostics
from exhunt.model import Record


@dataclass
class FileFacts:
    """What a reader learned about one file while streaming it (mutable accumulator)."""

    records: int = 0
    first: datetime | None = None
    last: datetime | None = None
    log_type: str | None = None
    #: Build text -> [first, last] time it was seen (``None`` when seen without a time).
    builds: dict[str, list[datetime | None]] = field(default_factory=dict)
    servers: Counter[str] = field(default_factory=Counter)
    #: Sub-sources of a file (event-log channels): name -> [records, first, last].
    parts: dict[str, list] = field(default_factory=dict)

    def saw_time(self, moment: datetime | None) -> None:
        if moment is None:
            return
        if self.first is None or moment < self.first:
            self.first = moment
        if self.last is None or moment > self.last:
            self.last = moment

    def saw_part(self, name: str, moment: datetime | None) -> None:
        row = self.parts.setdefault(name, [0, None, None])
        row[0] += 1
        if moment is not None:
            row[1] = moment if row[1] is None else min(row[1], moment)
            row[2] = moment if row[2] is None else max(row[2], moment)

    def saw_build(self, build: str, moment: datetime | None) -> None:
        span = self.builds.setdefault(build, [moment, moment])
        if moment is not None:
            span[0] = moment if span[0] is None else min(span[0], moment)
            span[1] = moment if span[1] is None else max(span[1], moment)


LineReader = Callable[[Iterable[tuple[int, str]], FileDiagnostics, FileFacts], Iterator[Record]]
StreamReader = Callable[[IO[bytes], FileDiagnostics, FileFacts], Iterator[Record]]

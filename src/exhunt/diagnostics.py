"""Stable diagnostic codes and a bounded collector.

A code never changes meaning once released; outputs and tests key on it.
"""

from __future__ import annotations

from collections import Counter

from exhunt.model import Diagnostic

#: code -> (level, short description). Levels: "error" (data lost), "warning" (data
#: read with an assumption or partly), "info" (worth knowing, nothing lost).
CODES: dict[str, tuple[str, str]] = {
    # evidence layouts
    "EXH-L001": ("error", "path given on the command line does not exist or cannot be opened"),
    "EXH-L002": ("error", "zip archive is corrupt or unreadable"),
    "EXH-L003": ("warning", "zip entry with an unsafe name (absolute or '..') was not read"),
    "EXH-L004": ("warning", "symbolic link leaving the evidence root was not followed"),
    "EXH-L005": ("warning", "collection metadata could not be parsed"),
    "EXH-L006": ("error", "directory could not be listed"),
    # classification of artefacts
    "EXH-S001": ("info", "file not recognised as a supported evidence source"),
    # readers
    "EXH-R001": ("error", "file could not be opened or read"),
    "EXH-R002": ("warning", "line does not fit the column header (extra cells: raw text only; missing cells: empty)"),
    "EXH-R003": ("warning", "bytes that are not valid UTF-8 were replaced"),
    "EXH-R004": ("warning", "no column header found; the default header of this log type was assumed"),
    "EXH-R005": ("warning", "timestamp could not be parsed"),
    "EXH-R006": ("warning", "file ends in the middle of a line (truncated)"),
    "EXH-R007": ("warning", "line longer than the reader limit was cut"),
    "EXH-R008": ("info", "further diagnostics of this kind for this file were counted, not listed"),
    "EXH-R009": ("warning", "file is UTF-16 encoded (not as Exchange writes it); decoded as UTF-16"),
    "EXH-R010": ("error", "event-log chunk or record could not be parsed; the rest of the file was read"),
    # rules
    "EXH-K001": ("error", "rule file could not be parsed or validated"),
    "EXH-K002": ("warning", "rule uses a feature the matcher cannot evaluate; rule skipped"),
    "EXH-K003": ("warning", "rule logsource matches no evidence source exhunt reads; rule skipped"),
    # file-tree scan
    "EXH-F001": ("info", "file larger than the content-scan limit: hashed in full, first N bytes scanned"),
    "EXH-F002": ("warning", "content scan timed out or failed; the file was hashed and checked against the IOCs only"),
    # pivot pass
    "EXH-P001": ("info", "a pivot value is so common on a host that only the first lines it links are listed"),
}

#: How many diagnostics of one code are listed per file before they are only counted.
PER_FILE_LIMIT = 20


def make(code: str, message: str, source: str | None = None, line: int | None = None,
         host: str | None = None, offset: int | None = None) -> Diagnostic:
    """Build a diagnostic whose level comes from the code table."""
    level = CODES[code][0]
    return Diagnostic(code=code, level=level, message=message, source=source, line=line, host=host,
                      offset=offset)


class FileDiagnostics:
    """Collects diagnostics for one evidence file, listing at most ``PER_FILE_LIMIT`` per code."""

    def __init__(self, source: str, limit: int = PER_FILE_LIMIT) -> None:
        self.source = source
        self.limit = limit
        self.items: list[Diagnostic] = []
        self.counts: Counter[str] = Counter()

    def add(self, code: str, message: str, line: int | None = None, offset: int | None = None) -> None:
        self.counts[code] += 1
        if self.counts[code] <= self.limit:
            self.items.append(make(code, message, self.source, line, offset=offset))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def finish(self) -> list[Diagnostic]:
        """Return the listed diagnostics plus one summary line per code that overflowed."""
        out = list(self.items)
        for code, count in sorted(self.counts.items()):
            if count > self.limit:
                out.append(make("EXH-R008", f"{count - self.limit} more {code} diagnostics in this file",
                                self.source))
        return out

"""Plain-text logs read line by line, such as the OABGeneratorLog.

The OABGeneratorLog's column layout is not documented (detections.md §1.3, §5.4); like
Test-ProxyLogon, only the message text is matched. A leading ISO-8601 timestamp, when a
line has one, becomes the record time; the whole line is the ``Message`` field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from exhunt.diagnostics import FileDiagnostics
from exhunt.model import Record
from exhunt.readers import FileFacts
from exhunt.readers.lines import Lines, parse_iso_utc

_LEADING_TIME = re.compile(r"^\W?(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z)")


def read(lines: Lines, diags: FileDiagnostics, facts: FileFacts) -> Iterator[Record]:
    """Stream one record per non-empty, non-directive line."""
    for number, text in lines:
        if not text.strip() or text.startswith("#"):
            continue
        match = _LEADING_TIME.match(text)
        moment = parse_iso_utc(match.group(1)) if match else None
        facts.records += 1
        facts.saw_time(moment)
        yield Record(number, moment, {"Message": text}, text)

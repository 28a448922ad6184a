"""JSON-lines and time helpers shared by the Timesketch and ECS writers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def json_line(document: object) -> str:
    """``document`` as one line of UTF-8 JSON; U+0085, U+2028 and U+2029 (which JSON allows raw but
    line-oriented tools split on) are written as ``\\uXXXX`` escapes."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def utc_micro(moment: datetime) -> tuple[str, int]:
    """ISO-8601 UTC with microseconds (``+00:00``) and the same instant in microseconds since the epoch."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime reached the output layer")
    moment = moment.astimezone(UTC)
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return moment.isoformat(timespec="microseconds"), micros


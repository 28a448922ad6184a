"""IIS logs in W3C extended format.

Fields come from ``#Fields:`` (which may change mid-file); times are UTC. Spaces inside
the user agent are written as ``+`` and decoded here. Besides the W3C names, records
carry the SigmaHQ webserver aliases (``cs-user-agent``, ``cs-referer``, ``cs-cookie``) and
``cs-uri`` = stem and query joined by ``?`` (detections.md §1.5), and ``cs-uri-decoded`` =
``cs-uri`` percent-decoded once (``%3F@`` -> ``?@``, ``%40`` -> ``@``), so rules can match the
ProxyShell/ProxyNotShell URL forms after decoding as EOMTv2's ``{UrlDecode:{REQUEST_URI}}`` does.
``+`` in a URI is not a space and is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from functools import lru_cache
from urllib.parse import unquote

from exhunt.diagnostics import FileDiagnostics
from exhunt.model import Record
from exhunt.readers import FileFacts
from exhunt.readers.lines import Lines, directive

#: The default field set IIS writes on Exchange servers (detections.md §1.5).
EXCHANGE_DEFAULT_FIELDS = (
    "date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port", "cs-username",
    "c-ip", "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus", "sc-win32-status", "time-taken",
)
ALIASES = {"cs(User-Agent)": "cs-user-agent", "cs(Referer)": "cs-referer", "cs(Cookie)": "cs-cookie"}
#: Fields IIS writes with ``+`` for spaces; the reader turns ``+`` back into spaces.
PLUS_DECODED = ("cs(User-Agent)", "cs(Referer)")
#: Fields the reader adds: stem and query joined (``cs-uri``), and that URL percent-decoded.
JOINED_URI, DECODED_URI = "cs-uri", "cs-uri-decoded"


def read(lines: Lines, diags: FileDiagnostics, facts: FileFacts) -> Iterator[Record]:
    """Stream the requests of one IIS log file."""
    fields: tuple[str, ...] = ()
    default_day: date | None = None
    for number, text in lines:
        if not text.strip():
            continue
        if text.startswith("#"):
            name, value = directive(text)
            if name == "fields":
                fields = tuple(value.split())
            elif name == "date":
                default_day = _parse_day(value[:10])
            elif name == "software":
                facts.log_type = value
            continue
        if not fields:
            fields = EXCHANGE_DEFAULT_FIELDS
            diags.add("EXH-R004", "no #Fields header; the Exchange default IIS fields were assumed", number)
        facts.records += 1
        line = line_values(fields, text)
        if line is None:
            diags.add("EXH-R002", f"{len(text.split())} tokens for {len(fields)} fields", number)
            yield Record(number, None, {}, text)
            continue
        values = dict(line)
        moment = _time(values, default_day)
        if moment is None and ("time" in values or "date" in values):
            diags.add("EXH-R005", "unparseable date/time", number)
        facts.saw_time(moment)
        yield Record(number, moment, values, text)


class LineFields(Mapping[str, str]):
    """The fields of a request line split into as many tokens as there are W3C ``fields``, each worked out
    when asked for: ``-`` is empty, ``+`` a space in :data:`PLUS_DECODED` fields (and their aliases), and
    the joined and decoded URI come from the stem and the query."""

    __slots__ = ("_sources", "_tokens")

    def __init__(self, fields: tuple[str, ...], tokens: list[str]) -> None:
        self._sources = _sources(fields)
        self._tokens = tokens

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        source = self._sources.get(name)
        if source is None:
            return default
        position, plus = source
        if position < 0:
            stem, query = self.get("cs-uri-stem", ""), self.get("cs-uri-query", "")
            joined = f"{stem}?{query}" if query else stem
            return joined if position == _JOINED else unquote(joined)  # type: ignore[arg-type]
        token = self._tokens[position]
        if token == "-":
            return ""
        return token.replace("+", " ") if plus else token

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


#: Positions standing for the joined and the decoded URI.
_JOINED, _DECODED = -1, -2


@lru_cache(maxsize=64)
def _sources(fields: tuple[str, ...]) -> dict[str, tuple[int, bool]]:
    """Where each field of a line comes from: a token's position (or the URI's) and whether ``+`` means a space."""
    sources = {name: (position, name in PLUS_DECODED) for position, name in enumerate(fields)}
    for name, alias in ALIASES.items():
        if name in sources:
            sources[alias] = sources[name]
    sources[JOINED_URI], sources[DECODED_URI] = (_JOINED, False), (_DECODED, False)
    return sources


def header_fields(text: str) -> tuple[str, ...] | None:
    """The field names a ``#Fields:`` line sets; ``None`` for any other line."""
    if not text.startswith("#"):
        return None
    name, value = directive(text)
    return tuple(value.split()) if name == "fields" else None


def line_values(fields: tuple[str, ...], text: str) -> LineFields | None:
    """The fields :func:`read` gives a request line under ``fields``; ``None`` when it would give none."""
    tokens = text.split()
    return LineFields(fields, tokens) if len(tokens) == len(fields) else None


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _time(values: dict[str, str], default_day: date | None) -> datetime | None:
    day = _parse_day(values["date"]) if "date" in values else default_day
    if day is None or "time" not in values:
        return None
    try:
        clock = time.fromisoformat(values["time"])
    except ValueError:
        return None
    return datetime.combine(day, clock, tzinfo=UTC)

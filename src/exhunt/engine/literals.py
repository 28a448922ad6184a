"""Literals a raw log line must contain for a rule to match it (the prefilter's input).

From a rule's condition (in the rule form of :mod:`exhunt.engine.matcher`), compute a set of
lower-case strings such that every line the rule can match contains at least one of them, or
``None`` when that cannot be proved (a ``not`` at the top, a CIDR or numeric comparison, a field
whose raw form is not its value). Value strings are turned into what the raw line holds: CSV logs
double quotes inside quoted cells (so only quote-free pieces are used), IIS writes spaces in user
agents and referers as ``+``, ``cs-uri`` joins stem and query with ``?`` where the log has a space,
and a value matched in a percent-decoded field is in the raw line either as it is or with some
character encoded, so such a value gives the literal or :data:`ENCODED`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from exhunt.readers.w3c import ALIASES, DECODED_URI, JOINED_URI, PLUS_DECODED

try:  # Python 3.11 keeps the regex parser in sre_parse; 3.12 moved it to re._parser
    from re import _parser as sre_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_parse as sre_parser  # type: ignore[no-redef]

Literals = frozenset[str] | None

#: Percent-decoded fields: a value is in the raw line as it is, or percent-encoded (:data:`ENCODED`).
DECODED_FIELDS = frozenset({DECODED_URI})
#: The pseudo-literal "one of the other literals of this set, with some of its characters percent-encoded": a
#: line holds it where the prefilter finds such a form (any line holding a ``%`` may). Never a real literal,
#: which is a run of ASCII.
ENCODED = "\u2030"
#: IIS fields written with ``+`` for spaces (as the W3C reader decodes them, under both names).
PLUS_FIELDS = frozenset({*PLUS_DECODED, *(ALIASES[name] for name in PLUS_DECODED)})
_QUOTES = re.compile(r"[\"']")
_NOT_ASCII = re.compile(r"[^\x00-\x7f]+")


def required(node: dict[str, Any], kind: str) -> tuple[Literals, frozenset[str] | None]:
    """Literals one of which every line matching the condition ``node`` (rule form, see
    :mod:`exhunt.engine.matcher`) contains (``None`` if unprovable), and the fields whose tests give them: a
    matching line holds one of the literals in one of these fields' values (``None`` when a literal comes from
    the raw line or none is provable)."""
    op = node["op"]
    if op == "all":
        options = [found for found in (required(arg, kind) for arg in node["args"]) if found[0]]
        return max(options, key=lambda found: _strength(found[0]), default=(None, None))  # type: ignore[arg-type]
    if op == "any":
        parts = [required(arg, kind) for arg in node["args"]]
        if not parts or any(not literals for literals, _ in parts):
            return None, None
        fields = [names for _, names in parts]
        return (frozenset().union(*(literals for literals, _ in parts)),  # type: ignore[arg-type]
                None if None in fields else frozenset().union(*fields))  # type: ignore[arg-type]
    if op == "field":
        literals = _raw_form(_value_literal(node["value"]), node["field"], kind)
        if literals and node["field"] in DECODED_FIELDS:
            literals |= {ENCODED}
        return literals, frozenset({node["field"]}) if literals else None
    if op == "keyword":
        return _raw_form(_value_literal(node["value"]), None, kind), None
    return None, None


#: Source kinds whose field values come each from one piece of the line, by the byte between pieces.
#: Exchange CSV logs: the cells (``exchange_csv.split_cells``), in a line without quotes, NUL or bare CR
#: exactly its comma-separated pieces (not ECP logs: their last column, EventData, keeps its commas). IIS:
#: the space-separated tokens of a line of printable ASCII, ``-`` for empty, ``+`` for spaces in
#: :data:`PLUS_FIELDS` (the joined and decoded URI fields come from two tokens).
CELLS = {"httpproxy": b",", "rps-http": b",", "iis": b" "}
#: Fields made of more than one piece of the line.
JOINED_FIELDS = frozenset({JOINED_URI, DECODED_URI})


def cell_values(kind: str, field: str, piece: str) -> tuple[str, ...]:
    """The values ``field`` may get from one piece of a line of ``kind`` (see :data:`CELLS`): an alias
    (``cs-user-agent``) is decoded when it stands for ``cs(User-Agent)``, not when it is a column of its own."""
    if kind != "iis":
        return (piece,)
    if piece == "-":
        return ("",)
    if field in PLUS_DECODED:
        return (piece.replace("+", " "),)
    if field in PLUS_FIELDS:
        return tuple(dict.fromkeys((piece.replace("+", " "), piece)))
    return (piece,)


#: Request paths every Exchange front end logs all day: a literal inside one of them selects
#: ordinary traffic, whatever its length (protocol folders of detections.md §1.1).
COMMON_VALUES = (
    "/autodiscover/autodiscover.xml", "/ews/exchange.asmx", "/mapi/emsmdb/", "/mapi/nspi/",
    "/microsoft-server-activesync/default.eas", "/owa/service.svc", "/ecp/", "/oab/", "/rpc/rpcproxy.dll",
    "get", "post", "head", "options",
)


@cache
def _quality(literal: str) -> int:
    if literal.isdigit():
        return 0  # a status code: in nearly every line
    if any(literal in common for common in COMMON_VALUES):
        return 1
    return len(literal)


def _strength(literals: frozenset[str]) -> tuple[int, int, tuple[int, ...]]:
    """Prefer sets whose weakest literal is most selective, then smaller sets, then sets whose other literals
    are more selective (:data:`ENCODED` goes with every literal of a decoded field: then the literal decides)."""
    qualities = tuple(sorted(_quality(lit) for lit in literals))
    return (qualities[0], -len(literals), qualities)


def _value_literal(value: dict[str, Any]) -> str | None:
    if value["type"] == "string":
        pieces = _string_pieces(value["parts"])
    elif value["type"] == "number":
        pieces = [str(value["number"])]
    elif value["type"] == "regex":
        pieces = regex_pieces(value["regex"])
    else:
        return None
    return max(pieces, key=_quality, default=None) or None


def _string_pieces(parts: Iterable[object]) -> list[str]:
    pieces, current = [], ""
    for part in parts:
        if isinstance(part, str):
            current += part
        else:  # a wildcard
            pieces.append(current)
            current = ""
    pieces.append(current)
    return [piece for piece in pieces if piece]


def regex_pieces(pattern: str) -> list[str]:
    """Literal runs every match of ``pattern`` contains: those of its top-level sequence and groups."""
    try:
        parsed = sre_parser.parse(pattern)
    except (re.error, RecursionError):
        return []
    return _runs(parsed)


def _runs(sequence: Iterable[tuple[object, object]]) -> list[str]:
    pieces, current = [], ""
    for op, arg in sequence:
        if op is sre_parser.LITERAL:
            current += chr(arg)  # type: ignore[arg-type]
            continue
        if current:
            pieces.append(current)
            current = ""
        if op is sre_parser.SUBPATTERN:  # a group in the sequence must match once
            pieces.extend(_runs(arg[-1]))  # type: ignore[index]
    if current:
        pieces.append(current)
    return pieces


def _raw_form(literal: str | None, field: str | None, kind: str) -> Literals:
    """How ``literal`` appears in the raw line of ``kind``, as a one-element set, or ``None``."""
    if not literal:
        return None
    pieces = [literal]
    if kind != "iis" or field is None:
        pieces = [piece for piece in _QUOTES.split(literal) if piece]  # CSV / ECP quoting doubles quotes
    if kind == "iis" and field in PLUS_FIELDS:
        pieces = [piece.replace(" ", "+") for piece in pieces]
    if kind == "iis" and field in JOINED_FIELDS:  # the '?' joining stem and query is a space in the line
        pieces = [piece for part in pieces for piece in part.split("?") if piece]
    # the prefilter folds ASCII case only (``É`` is not ``é`` to it): literals are runs of ASCII
    pieces = [run for piece in pieces for run in _NOT_ASCII.split(piece) if run]
    best = max(pieces, key=lambda piece: _quality(piece.lower()), default="")
    return frozenset({best.lower()}) if best else None

"""Attacker-written text as safe one-line data, for every writer and the timeline.

Everything that reaches these helpers may have been written by an attacker (URLs, user agents,
mailbox names, command lines): it is treated as data, made single-line and never interpreted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from exhunt.model import Finding

_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
#: C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: everything that
#: ``str.splitlines`` or a spreadsheet could treat as a line break or that a terminal interprets.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

#: Evidence fields that best describe an event, in the order they are tried for messages.
_KEY_FIELDS = ("AnchorMailbox", "BackEndCookie", "ClientInfo", "CmdletName", "CommandLine", "TargetFilename",
               "EventData", "Message", "sample", "raw")
MESSAGE_LIMIT = 400


def one_line(value: object) -> str:
    """``value`` as text on one line: CR, LF and tab become ``\\r``, ``\\n``, ``\\t``; other
    control and line-separator characters become ``\\xNN``/``\\uNNNN``."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(escape_char, text)


def escape_char(match: re.Match[str]) -> str:
    """One character, visible: ``\\r``, ``\\n``, ``\\t``, else ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN``."""
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def compact_evidence(evidence: Mapping[str, object]) -> str:
    """``key=value; key=value`` on one line, in the evidence's own order."""
    return "; ".join(f"{one_line(key)}={one_line(value)}" for key, value in evidence.items())


def _field(evidence: Mapping[str, object], *names: str) -> str:
    for name in names:
        value = evidence.get(name)
        if value not in (None, "", "-"):
            return str(value)
    return ""


def message(finding: Finding, limit: int = MESSAGE_LIMIT) -> str:
    """One line for timelines: the rule title, then the evidence that says most about the event."""
    evidence = finding.evidence
    parts = [finding.rule.title]
    method = _field(evidence, "cs-method", "Method")
    stem = _field(evidence, "cs-uri-stem", "UrlStem")
    if stem:
        query = _field(evidence, "cs-uri-query")
        status = _field(evidence, "sc-status", "HttpStatus")
        request = " ".join(p for p in (method, stem + (f"?{query}" if query else "")) if p)
        parts.append(request + (f" -> {status}" if status else ""))
    for name in _KEY_FIELDS:
        value = _field(evidence, name)
        if value:
            parts.append(f"{name}={value}")
            break
    if finding.client_ip:
        parts.append(f"from {finding.client_ip}")
    text = one_line(" | ".join(parts))
    return text if len(text) <= limit else text[: limit - 1] + "…"

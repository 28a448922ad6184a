"""Velociraptor offline collections, zipped or extracted.

Uploads live under ``uploads/<accessor>/<device>/<names...>`` with each name escaped by
Velociraptor's ``SanitizeStringForZip`` (``C:`` is ``C%3A``, ``\\\\.\\C:`` is
``%5C%5C.%5CC%3A``). Only ``uploads/`` entries are evidence; the host name comes from
``client_info.json``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from exhunt.diagnostics import make
from exhunt.layouts.listing import Entry, Listing, Problem
from exhunt.layouts.mapped import Mapped

#: Top-level metadata files (case-folded), one of which must sit beside ``uploads/``.
METADATA = frozenset({"uploads.json", "client_info.json", "collection_context.json", "log.json"})
#: When one Windows path was uploaded through several accessors, the lowest rank is kept.
ACCESSOR_RANK = {"auto": 0, "ntfs": 1, "lazy_ntfs": 2, "mft": 3, "file": 4}
#: Keys of ``client_info.json`` that name the host, by preference.
HOST_KEYS = ("Hostname", "hostname", "Fqdn", "fqdn")
#: Characters Velociraptor escapes besides control characters.
_ESCAPED = frozenset('?"*:|<>%/\\. ')
_HEX = re.compile(r"%([0-9A-Fa-f]{2})")
_DRIVE = re.compile(r"(?:\\\\[.?]\\)?([A-Za-z]):")
_METADATA_LIMIT = 1 << 20


def unescape(name: str) -> str:
    """Decode one escaped name component, once.

    Only ``%XX`` sequences for characters Velociraptor escapes are decoded, so both
    ``%254Operational`` (current) and ``%4Operational`` (older collectors) give ``%4Operational``.
    """

    def decode(match: re.Match[str]) -> str:
        char = chr(int(match[1], 16))
        return char if char in _ESCAPED or char < " " or char == "\x7f" else match[0]

    return _HEX.sub(decode, name)


def windows_path(parts: tuple[str, ...]) -> str | None:
    """The Windows path of ``<device>/<names...>``; ``None`` if a name is unsafe.

    ``C%3A`` and ``%5C%5C.%5Cc%3A`` become ``C:``; other device paths, such as volume
    shadow copies (``\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1``), are kept.
    A decoded name that is ``.``, ``..`` or holds a separator is unsafe.
    """
    device, *names = (unescape(part) for part in parts)
    if drive := _DRIVE.fullmatch(device):
        head = [f"{drive[1].upper()}:"]
    elif device.startswith("\\\\") and ".." not in device.split("\\"):
        head = [device]
    else:
        head, names = [], [device, *names]
    if any(name in (".", "..") or "\\" in name or "/" in name for name in names):
        return None
    return "\\".join(head + names)


def recognise(listing: Listing) -> Mapped | None:
    """Map a Velociraptor collection, or ``None`` if ``listing`` is not one."""
    top = {entry.parts[0].casefold() for entry in listing.entries}
    uploads = [entry for entry in listing.entries
               if len(entry.parts) > 2 and entry.parts[0].casefold() == "uploads"]
    if not uploads or not top & METADATA:
        return None
    problems = list(listing.problems)
    chosen: dict[str, tuple[int, str, Entry]] = {}
    for entry in uploads:
        path = windows_path(entry.parts[2:])
        if path is None:
            problems.append(Problem(entry.parts, make(
                "EXH-L003", "upload whose decoded name is '.', '..' or holds a separator skipped",
                source=entry.origin)))
            continue
        rank = ACCESSOR_RANK.get(entry.parts[1].casefold(), len(ACCESSOR_RANK))
        key = path.casefold()
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, path, entry)
    files = tuple(entry.evidence(path) for _, path, entry in chosen.values())
    hostname = None
    info = next((entry for entry in listing.entries
                 if len(entry.parts) == 1 and entry.parts[0].casefold() == "client_info.json"), None)
    if info is not None:
        hostname, problem = _hostname(info)
        if problem is not None:
            problems.append(problem)
    return Mapped("velociraptor", files, tuple(problems), hostname)


def _hostname(info: Entry) -> tuple[str | None, Problem | None]:
    """Read the host name from ``client_info.json`` (an object, a list of them, or JSON lines)."""
    try:
        with info.evidence(info.parts[0]).open() as stream:
            text = stream.read(_METADATA_LIMIT).decode("utf-8-sig")
        records = _objects(text)
    except Exception as exc:  # attacker-influenced metadata: any failure is a diagnostic
        return None, Problem(info.parts, make("EXH-L005", f"cannot parse client_info.json: {exc}",
                                              source=info.origin))
    nested = [value for record in records for value in record.values() if isinstance(value, dict)]
    candidates = records + nested
    for key in HOST_KEYS:
        for candidate in candidates:
            value = candidate.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip(), None
    return None, None


def _objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a document holding one object, a list of them, or JSON lines."""
    try:
        data = json.loads(text)
        values = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        values = [json.loads(line) for line in text.splitlines() if line.strip()]
    objects = [value for value in values if isinstance(value, dict)]
    if not objects:
        raise ValueError("no JSON object found")
    return objects

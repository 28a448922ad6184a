"""Drive-letter trees: KAPE target output (``<tdest>/C/...``) and CyLR zips (``C\\Windows\\...``).

Both recreate each source path under a folder named by its drive letter, without the
colon (a ``C:`` folder is accepted too). CyLR is told apart by the ``CyLR.log`` it writes.
Files beside the drive folders (KAPE's console and copy logs) keep their relative names.
"""

from __future__ import annotations

import re

from exhunt.layouts.listing import Listing
from exhunt.layouts.mapped import Mapped, map_entries, relative_path

_DRIVE = re.compile(r"[A-Za-z]:?")


def drive(name: str) -> str | None:
    """``C:`` for a drive folder name such as ``c`` or ``C:``, else ``None``."""
    return f"{name[0].upper()}:" if _DRIVE.fullmatch(name) else None


def windows_path(parts: tuple[str, ...]) -> str:
    """The Windows path of a name under a drive folder (others stay relative)."""
    letter = drive(parts[0]) if len(parts) > 1 else None
    return f"{letter}\\" + "\\".join(parts[1:]) if letter else relative_path(parts)


def recognise(listing: Listing) -> Mapped | None:
    """Map a drive-letter tree as ``cylr`` or ``kape``, or ``None`` if it has no drive folder."""
    if not any(len(entry.parts) > 1 and drive(entry.parts[0]) for entry in listing.entries):
        return None
    cylr = any(len(entry.parts) == 1 and entry.parts[0].casefold() == "cylr.log" for entry in listing.entries)
    return map_entries("cylr" if cylr else "kape", listing, windows_path)

"""A live or mounted Windows root: a folder holding ``Windows``, ``Program Files``... as ``C:``."""

from __future__ import annotations

from exhunt.layouts.listing import Listing
from exhunt.layouts.mapped import Mapped, map_entries

#: Top-level folders (case-folded) that mark the root of a Windows volume.
MARKERS = frozenset({"windows", "program files", "inetpub", "programdata"})


def recognise(listing: Listing) -> Mapped | None:
    """Map a Windows root to drive ``C:``, or ``None`` if ``listing`` is not one."""
    if not any(len(entry.parts) > 1 and entry.parts[0].casefold() in MARKERS for entry in listing.entries):
        return None
    return map_entries("windows-root", listing, lambda parts: "C:\\" + "\\".join(parts))

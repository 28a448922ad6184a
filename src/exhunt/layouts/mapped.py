"""The result every layout produces from a listing, and the simple one-to-one mappings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exhunt.layouts.evidence import EvidenceFile
from exhunt.layouts.listing import Listing, Problem


@dataclass(frozen=True, slots=True)
class Mapped:
    """A listing recognised as ``layout``: its files named in the host's namespace."""

    layout: str
    files: tuple[EvidenceFile, ...]
    problems: tuple[Problem, ...]
    hostname: str | None = None


def map_entries(layout: str, listing: Listing, path_of: Callable[[tuple[str, ...]], str]) -> Mapped:
    """Name every file of ``listing`` by ``path_of`` its relative name components."""
    return Mapped(layout, tuple(entry.evidence(path_of(entry.parts)) for entry in listing.entries),
                  listing.problems)


def relative_path(parts: tuple[str, ...]) -> str:
    """A relative name with backslashes, as used when no drive is known."""
    return "\\".join(parts)


def plain(listing: Listing) -> Mapped:
    """The fallback layout ``files``: loose files keep their relative names."""
    return map_entries("files", listing, relative_path)

"""Recognise evidence collections and expose each as one read-only tree of Windows paths.

A folder or zip is tried as a Velociraptor collection, then a drive-letter tree (KAPE,
CyLR), then a Windows root. A folder that is none of these but has collections among its
children (folders or ``.zip`` files) gives one collection per child, and its loose files
one more. Anything else is plain ``files``. Nothing is ever extracted or written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from exhunt.diagnostics import make
from exhunt.layouts import drives, velociraptor, winroot
from exhunt.layouts.evidence import Collection, EvidenceFile
from exhunt.layouts.listing import Listing, list_folder, list_zip
from exhunt.layouts.mapped import Mapped, plain
from exhunt.model import Diagnostic

__all__ = ["Collection", "EvidenceFile", "discover"]

_RECOGNISERS = (velociraptor.recognise, drives.recognise, winroot.recognise)


def discover(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Collection], list[Diagnostic]]:
    """Recognise the collections in ``paths`` (files, folders or zips); never raises for bad input.

    Collections come in the order of ``paths``, then by name. A diagnostic about a
    collection's content is also attached to that collection; the list returned holds
    every diagnostic once.
    """
    collections: list[Collection] = []
    diagnostics: list[Diagnostic] = []
    for given in paths:
        found, problems = _discover(os.fspath(given))
        diagnostics.extend(problems)
        for collection in found:
            collections.append(collection)
            diagnostics.extend(collection.diagnostics)
    return collections, diagnostics


def _discover(given: str) -> tuple[list[Collection], list[Diagnostic]]:
    try:
        info = os.stat(given)
    except OSError as exc:
        return [], [make("EXH-L001", f"cannot open path: {exc.strerror}", source=given)]
    if stat.S_ISDIR(info.st_mode):
        return _folder(given)
    if not stat.S_ISREG(info.st_mode) or not os.access(given, os.R_OK):
        return [], [make("EXH-L001", "not a readable file or folder", source=given)]
    if _is_zip(given):
        listing = list_zip(given)
        if isinstance(listing, Diagnostic):
            return [], [listing]
        return [_collection(given, _recognise(listing) or plain(listing))], []
    path = os.path.abspath(given)
    name = os.path.basename(path)
    return [Collection(name, "files", given, (EvidenceFile(name, None, path, info.st_size, info.st_mtime),))], []


def _folder(given: str) -> tuple[list[Collection], list[Diagnostic]]:
    listing = list_folder(given)
    mapped = _recognise(listing)
    if mapped is not None:
        return [_collection(given, mapped)], []
    return _children(given, listing) or ([_collection(given, plain(listing))], [])


def _children(given: str, listing: Listing) -> tuple[list[Collection], list[Diagnostic]] | None:
    """One collection per child folder or zip, if any child is a recognised collection."""
    folders = listing.folders()
    zips = {entry.parts[0]: entry for entry in listing.entries
            if len(entry.parts) == 1 and _is_zip(entry.parts[0])}
    collections: list[Collection] = []
    diagnostics: list[Diagnostic] = []
    recognised = False
    for name in sorted(folders.keys() | zips.keys()):
        sub = folders[name] if name in folders else list_zip(zips[name].member)
        if isinstance(sub, Diagnostic):
            diagnostics.append(sub)
            continue
        mapped = _recognise(sub)
        recognised = recognised or mapped is not None
        collections.append(_collection(os.path.join(given, name), mapped or plain(sub)))
    if not recognised:
        return None
    rest = Listing(
        tuple(entry for entry in listing.entries if len(entry.parts) == 1 and entry.parts[0] not in zips),
        tuple(problem for problem in listing.problems if not (problem.parts and problem.parts[0] in folders)),
    )
    if rest.entries:
        collections.append(_collection(given, plain(rest)))
    else:
        diagnostics.extend(problem.diagnostic for problem in rest.problems)
    return collections, diagnostics


def _recognise(listing: Listing) -> Mapped | None:
    return next((mapped for recognise in _RECOGNISERS if (mapped := recognise(listing)) is not None), None)


def _collection(root: str, mapped: Mapped) -> Collection:
    return Collection(
        label=_label(root),
        layout=mapped.layout,
        root=root,
        files=tuple(sorted(mapped.files, key=lambda file: (file.path, file.member))),
        hostname=mapped.hostname,
        diagnostics=tuple(problem.diagnostic for problem in mapped.problems),
    )


def _label(root: str) -> str:
    """The folder or zip name (without ``.zip``) of ``root``."""
    name = os.path.basename(os.path.normpath(os.path.abspath(root))) or root
    return name[:-4] if _is_zip(name) else name


def _is_zip(name: str) -> bool:
    return name.casefold().endswith(".zip")

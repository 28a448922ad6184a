"""List the files of a folder or a zip uniformly, by relative name, without writing anything.

Names are split on both ``/`` and ``\\`` (CyLR zips and their extracted copies use either),
empty and ``.`` components are dropped, and a name with a ``..`` component is refused with
``EXH-L003``: names are only labels, but they must never escape the collection.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

from exhunt.diagnostics import make
from exhunt.layouts.evidence import EvidenceFile
from exhunt.model import Diagnostic


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a listing: its relative name components and where its bytes are."""

    parts: tuple[str, ...]
    container: str | None
    member: str
    size: int
    mtime: float | None = None

    @property
    def origin(self) -> str:
        return f"{self.container}!{self.member}" if self.container else self.member

    def evidence(self, path: str) -> EvidenceFile:
        """The evidence handle of this file, known as ``path`` in its collection."""
        return EvidenceFile(path=path, container=self.container, member=self.member, size=self.size,
                            mtime=self.mtime)


@dataclass(frozen=True, slots=True)
class Problem:
    """A diagnostic about the place ``parts`` of a listing (``()`` for the listing as a whole)."""

    parts: tuple[str, ...]
    diagnostic: Diagnostic


@dataclass(frozen=True, slots=True)
class Listing:
    """The files of a folder or zip, sorted by name, and the problems met listing them."""

    entries: tuple[Entry, ...]
    problems: tuple[Problem, ...] = ()

    def folders(self) -> dict[str, Listing]:
        """The listing of each top-level folder holding files, without its name component."""
        entries: dict[str, list[Entry]] = {}
        for entry in self.entries:
            if len(entry.parts) > 1:
                entries.setdefault(entry.parts[0], []).append(
                    Entry(entry.parts[1:], entry.container, entry.member, entry.size, entry.mtime))
        problems: dict[str, list[Problem]] = {}
        for problem in self.problems:
            if problem.parts and problem.parts[0] in entries:
                moved = Problem(problem.parts[1:], problem.diagnostic)
                problems.setdefault(problem.parts[0], []).append(moved)
        return {name: Listing(tuple(found), tuple(problems.get(name, ()))) for name, found in entries.items()}


def split_name(name: str) -> tuple[str, ...] | None:
    """Split a relative name into components; ``None`` if it has a ``..`` component."""
    parts = tuple(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))
    return None if ".." in parts else parts


def list_folder(root: str) -> Listing:
    """Walk ``root`` without following symbolic links.

    A link whose target leaves ``root`` is reported (``EXH-L004``); a link inside ``root``
    is skipped silently, since its target is listed under its real name. Folders that
    cannot be listed are reported (``EXH-L006``) and the walk goes on.
    """
    root = os.path.abspath(root)
    real_root = os.path.realpath(root)
    entries: list[Entry] = []
    problems: list[Problem] = []
    pending: list[tuple[str, tuple[str, ...]]] = [(root, ())]
    while pending:
        folder, rel = pending.pop()
        try:
            with os.scandir(folder) as scan:
                children = sorted(scan, key=lambda child: child.name)
        except OSError as exc:
            problems.append(Problem(rel, make("EXH-L006", f"cannot list directory: {exc.strerror}",
                                              source=folder)))
            continue
        for child in children:
            parts = split_name(child.name)
            if parts is None:
                problems.append(Problem(rel, make("EXH-L003", "file name with a '..' component skipped",
                                                  source=child.path)))
            elif child.is_symlink():
                target = os.path.realpath(child.path)
                if os.path.commonpath([real_root, target]) != real_root:
                    problems.append(Problem(rel + parts, make(
                        "EXH-L004", f"symbolic link to {target} not followed", source=child.path)))
            elif child.is_dir(follow_symlinks=False):
                pending.append((child.path, rel + parts))
            elif child.is_file(follow_symlinks=False):
                try:
                    info = child.stat(follow_symlinks=False)
                except OSError as exc:
                    problems.append(Problem(rel + parts, make(
                        "EXH-R001", f"cannot read file: {exc.strerror}", source=child.path)))
                    continue
                entries.append(Entry(rel + parts, None, child.path, info.st_size, info.st_mtime))
    entries.sort(key=lambda entry: entry.parts)
    problems.sort(key=lambda problem: problem.parts)
    return Listing(tuple(entries), tuple(problems))


def list_zip(path: str) -> Listing | Diagnostic:
    """List a zip's central directory in place; an unreadable zip gives ``EXH-L002``.

    Directory entries are skipped; absolute names and names with ``..`` components are
    reported (``EXH-L003``). When a name occurs twice the last entry wins, as in
    :meth:`zipfile.ZipFile.open`.
    """
    path = os.path.abspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except Exception as exc:  # any failure to parse attacker-influenced bytes is a diagnostic
        return make("EXH-L002", f"cannot read zip archive: {exc}", source=path)
    members: dict[str, Entry] = {}
    problems: list[Problem] = []
    for info in infos:
        name = info.filename
        if info.is_dir() or name.endswith("\\"):
            continue
        parts = None if name.startswith(("/", "\\")) else split_name(name)
        if not parts:
            problems.append(Problem((), make("EXH-L003", "zip entry with an absolute or '..' name skipped",
                                             source=f"{path}!{name}")))
            continue
        members[name] = Entry(parts, path, name, info.file_size)
    entries = sorted(members.values(), key=lambda entry: entry.parts)
    return Listing(tuple(entries), tuple(problems))

"""Read-only handles on evidence files, wherever they physically live."""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from typing import IO

from exhunt.model import Diagnostic


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    """One file of a collection.

    ``path`` is the file's location in the Windows namespace of its host
    (``C:\\Program Files\\...``) when the layout tells it, otherwise its path relative to
    the folder or zip given, with backslashes. ``container`` is the zip that holds it
    (``None`` for a plain file) and ``member`` the zip member name or the filesystem path.
    ``mtime`` is the file's modification time (POSIX seconds) where the layout keeps it: plain
    folders do; zip timestamps are not trusted. ``times`` holds the times a collector recorded
    from the source file system, as ``(name, POSIX seconds)`` pairs (``created``, ``changed``,
    ``modified``, ``accessed``; Velociraptor's file metadata). Plain data only, so that handles
    can be sent to worker processes.
    """

    path: str
    container: str | None
    member: str
    size: int
    mtime: float | None = None
    times: tuple[tuple[str, float], ...] = ()

    @property
    def origin(self) -> str:
        """Where a responder finds the bytes: a filesystem path or ``archive.zip!member``."""
        return f"{self.container}!{self.member}" if self.container else self.member

    @property
    def name(self) -> str:
        return self.path.replace("/", "\\").rsplit("\\", 1)[-1]

    def sha256(self) -> str:
        """The SHA-256 of the file's bytes (streamed, read-only), lower-case hex."""
        digest = hashlib.sha256()
        with self.open() as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def open(self) -> IO[bytes]:
        """Open the file read-only as a binary stream (zip members are streamed, never extracted)."""
        if self.container is None:
            return open(self.member, "rb")
        return _archive(self.container).open(self.member, "r")


#: Open archives of this process, by process, path, size and modification time: opening a member
#: through a new ``ZipFile`` reads the whole central directory again (5,000 members took 61 s).
#: Keyed by process because a forked worker must not share the parent's file offset; by size and
#: time so that an archive replaced on disk is opened again.
_ARCHIVES: dict[tuple[int, str, int, int], zipfile.ZipFile] = {}
_OPEN_ARCHIVES = 8


def _archive(container: str) -> zipfile.ZipFile:
    stat = os.stat(container)
    key = (os.getpid(), container, stat.st_size, stat.st_mtime_ns)
    archive = _ARCHIVES.get(key)
    if archive is None:
        archive = zipfile.ZipFile(container)
        mine = [other for other in _ARCHIVES if other[0] == key[0]]
        if len(mine) >= _OPEN_ARCHIVES:
            _ARCHIVES.pop(mine[0]).close()
        _ARCHIVES[key] = archive
    return archive


@dataclass(frozen=True, slots=True)
class Collection:
    """The evidence of one host, as recognised from one path given by the user.

    ``layout`` is one of ``windows-root``, ``kape``, ``velociraptor``, ``cylr``, ``files``.
    ``hostname`` is the host name found in collection metadata, if any; ``label`` names the
    collection (folder or zip name) and is the host name of last resort.
    """

    label: str
    layout: str
    root: str
    files: tuple[EvidenceFile, ...]
    hostname: str | None = None
    diagnostics: tuple[Diagnostic, ...] = field(default=())

"""Read-only handles on evidence files, wherever they physically live."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
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
        archive = zipfile.ZipFile(self.container)
        try:
            stream = archive.open(self.member, "r")
        except Exception:
            archive.close()
            raise
        return _ZipMemberStream(stream, archive)


class _ZipMemberStream:
    """A zip member stream that also closes its archive."""

    def __init__(self, stream: IO[bytes], archive: zipfile.ZipFile) -> None:
        self._stream = stream
        self._archive = archive

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self._stream.readline(size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._stream.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        self._stream.close()
        self._archive.close()

    def __enter__(self) -> _ZipMemberStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)


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

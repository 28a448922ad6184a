"""A cache of data derived from text exhunt parses at every start (Sigma rules, the IOC table), kept as JSON.

Entries are named by a digest of everything that decides their content (the texts, the code that
derives them, the versions of the libraries it calls), so an entry is never stale, only unused.
JSON is data: reading an entry runs no code. The folder is ``$EXHUNT_CACHE_DIR`` (empty: no cache),
else the user's cache folder; a cache that cannot be read or written only costs the parse.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from contextlib import suppress
from importlib import util
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
#: Entries kept per kind, the most recently used (each set of rule files read makes one).
KEPT = 8


def folder() -> Path | None:
    """Where entries are kept; ``None`` when caching is off (``EXHUNT_CACHE_DIR`` empty), or when the folder
    would be relative to where exhunt runs (no home is known; that may be the evidence)."""
    chosen = os.environ.get("EXHUNT_CACHE_DIR")
    if chosen is not None:
        where = Path(chosen)
    elif os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        where = Path(os.environ["LOCALAPPDATA"]) / "exhunt" / "cache"
    else:
        where = Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "exhunt"
    return where if chosen != "" and where.is_absolute() else None


def entry(kind: str, code: tuple[str, ...], libraries: tuple[tuple[str, str], ...],
          texts: list[tuple[str, str]]) -> Path | None:
    """The entry of ``kind`` derived from ``texts`` (``(name, text)`` pairs) by exhunt's modules ``code``
    (paths below the package) and ``libraries`` (``(import name, distribution name)``)."""
    where = folder()
    if where is None:
        return None
    digest = hashlib.sha256()
    try:
        for name in code:
            digest.update(hashlib.sha256((PACKAGE / name).read_bytes()).digest())
    except OSError:
        return None
    for module, distribution in libraries:
        digest.update(_installed(module, distribution).encode())
    for name, text in texts:
        for part in (name, text):
            encoded = part.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
    return where / f"{kind}-{digest.hexdigest()[:40]}.json"


def _installed(module: str, distribution: str) -> str:
    """The ``dist-info`` folder name (hence version) of an installed library, found beside its package
    (``importlib.metadata`` alone costs more than a cache hit saves)."""
    wanted = _normal(distribution)
    try:
        spec = util.find_spec(module)
        for location in (spec.submodule_search_locations or []) if spec else []:
            for found in os.scandir(Path(location).parent):
                name, _, version = found.name.removesuffix(".dist-info").partition("-")
                if found.name.endswith(".dist-info") and version and _normal(name) == wanted:
                    return found.name
    except (OSError, ImportError, ValueError):
        pass
    return f"{distribution} unknown"


def _normal(name: str) -> str:
    """A distribution name as packaging compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read(path: Path) -> Any:
    """The data of an entry (marked as used); ``None`` if there is none or it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    with suppress(OSError):  # a read-only cache is still used
        os.utime(path)
    return data


def write(path: Path, data: Any) -> None:
    """Write an entry atomically; nothing happens if it cannot be written."""
    kind = path.name.split("-", 1)[0]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{kind}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, separators=(",", ":"))
            os.replace(temporary, path)
        except (OSError, TypeError, ValueError):
            os.unlink(temporary)
            return
        mine = re.compile(rf"{re.escape(kind)}-(?:[0-9a-f]{{40}}\.json|\w+\.tmp)")
        entries = sorted((entry for entry in os.scandir(path.parent) if mine.fullmatch(entry.name)),
                         key=lambda entry: entry.stat().st_mtime_ns)
        done = [entry for entry in entries if entry.name.endswith(".json")]
        # the least recently used entries, and files of writes killed before they were renamed (an hour old)
        stale = done[:-KEPT] + [entry for entry in entries if entry.name.endswith(".tmp")
                                and entry.stat().st_mtime < time.time() - 3600]
        for entry in stale:
            with suppress(FileNotFoundError):
                os.unlink(entry.path)
    except OSError:
        pass

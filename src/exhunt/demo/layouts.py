"""Write a host's files (keyed by Windows path) in the layout of a collection tool.

Layouts (style_ecosystem.md §B.1): ``kape`` (``<host>/C/...``, one folder per drive) and
``kape-zip`` (the same tree zipped), ``velociraptor`` (offline-collector zip,
``uploads/auto/C%3A/...``) and ``velociraptor-dir`` (the same collection extracted),
``cylr`` (zip with ``C\\...`` backslash entries and ``CyLR.log``) and ``cylr-slash`` (the
same with ``C/...`` entries), ``windows-root`` (``<host>/Program Files``..., drive C: only)
and ``files`` (loose logs in the folders an administrator copies them to, no drive root).
Zips are byte-for-byte reproducible: sorted entries, entry times at the collection time.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

Files = Mapping[str, bytes]
#: When the ProxyLogon demo collections were taken (zip entry times and collector metadata).
COLLECTED = datetime(2021, 3, 9, 10, 0, 0, tzinfo=UTC)
_VELOCIRAPTOR_ESCAPED = frozenset('?"*:|<>%/\\')
#: What the ``files`` layout copies: (Windows path fragment, folder it is copied to); other files are left out.
LOOSE_FOLDERS = (
    ("\\Logging\\CmdletInfra\\Powershell-Proxy\\Http\\", ""),
    ("\\Logging\\HttpProxy\\", "HttpProxy\\"),
    ("\\inetpub\\logs\\LogFiles\\", "IIS\\"),
    ("\\winevt\\Logs\\", "EventLogs\\"),
)


def _split(path: str) -> tuple[str, list[str]]:
    """``C:\\a\\b`` -> (``C``, [``a``, ``b``])."""
    drive, _, rest = path.partition(":\\")
    return drive, rest.split("\\")


def _replace_dir(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)


def _write_tree(root: Path, files: Mapping[str, bytes]) -> None:
    for relative, data in files.items():
        destination = root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)


def _write_zip(target: Path, entries: Mapping[str, bytes], collected: datetime) -> None:
    with zipfile.ZipFile(target, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo("entry", date_time=collected.timetuple()[:6])
            info.filename = name  # set after construction: ZipInfo would turn "\" into "/" on Windows
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0
            info.external_attr = 0x20  # FILE_ATTRIBUTE_ARCHIVE
            archive.writestr(info, entries[name], compresslevel=6)


def _drive_tree(files: Files, separator: str = "/") -> dict[str, bytes]:
    """``C:\\a\\b`` -> ``C/a/b``: one folder per drive letter, as KAPE and CyLR recreate paths."""
    tree = {}
    for path, data in files.items():
        drive, parts = _split(path)
        tree[separator.join([drive, *parts])] = data
    return tree


def write_kape(out_dir: Path, host: str, files: Files, collected: datetime = COLLECTED) -> Path:
    """``<host>/<drive letter>/<path>``, as KAPE's ``--tdest`` with recreated directories."""
    root = out_dir / host
    _replace_dir(root)
    _write_tree(root, _drive_tree(files))
    return root


def write_kape_zip(out_dir: Path, host: str, files: Files, collected: datetime = COLLECTED) -> Path:
    """``<host>.zip`` holding ``C/...`` entries: a zipped KAPE target folder (no ``CyLR.log``)."""
    target = out_dir / f"{host}.zip"
    _write_zip(target, _drive_tree(files), collected)
    return target


def velociraptor_name(component: str) -> str:
    """Escape one path component like Velociraptor's ``SanitizeStringForZip``."""
    chars = [f"%{ord(c):02X}" if c in _VELOCIRAPTOR_ESCAPED or c < " " else c for c in component]
    for index in (0, -1):
        if chars and chars[index] in (".", " "):
            chars[index] = f"%{ord(chars[index]):02X}"
    return "".join(chars)


def _velociraptor_entries(host: str, files: Files, collected: datetime) -> dict[str, bytes]:
    """The entries of a Velociraptor offline collection (metadata approximated)."""
    entries: dict[str, bytes] = {}
    uploads = []
    for path, data in files.items():
        drive, parts = _split(path)
        name = "/".join(velociraptor_name(part) for part in [f"{drive}:", *parts])
        entries[f"uploads/auto/{name}"] = data
        uploads.append({"Path": path, "Size": len(data)})
    unix = int(collected.timestamp())
    client = {"Hostname": host, "Fqdn": f"{host}.contoso.local", "ClientId": "C.1234abcd"}
    context = {
        "client_id": "C.1234abcd", "session_id": "F.C13KQ5B8TNO2G", "create_time": unix,
        "request": {"artifacts": ["Windows.KapeFiles.Targets"]}, "state": "FINISHED",
        "total_uploaded_files": len(files), "total_uploaded_bytes": sum(len(d) for d in files.values()),
    }
    log = [
        {"_ts": unix, "client_time": unix, "level": "INFO",
         "message": "Starting collection of Windows.KapeFiles.Targets"},
        {"_ts": unix + 41, "client_time": unix + 41, "level": "INFO",
         "message": f"Collection of Windows.KapeFiles.Targets: uploaded {len(files)} files"},
    ]
    return entries | {
        "client_info.json": json.dumps(client, indent=1).encode(),
        "collection_context.json": json.dumps(context, indent=1).encode(),
        "log.json": "".join(json.dumps(line) + "\n" for line in log).encode(),
        "uploads.json": json.dumps(uploads, indent=1).encode(),
    }


def write_velociraptor(out_dir: Path, host: str, files: Files, collected: datetime = COLLECTED) -> Path:
    """``<host>.zip`` as written by a Velociraptor offline collector."""
    target = out_dir / f"{host}.zip"
    _write_zip(target, _velociraptor_entries(host, files, collected), collected)
    return target


def write_velociraptor_dir(out_dir: Path, host: str, files: Files, collected: datetime = COLLECTED) -> Path:
    """``<host>/``: a Velociraptor offline collection extracted (``uploads/auto/C%3A/...``, ``client_info.json``)."""
    root = out_dir / host
    _replace_dir(root)
    _write_tree(root, _velociraptor_entries(host, files, collected))
    return root


def write_cylr(out_dir: Path, host: str, files: Files, collected: datetime = COLLECTED, *,
               separator: str = "\\") -> Path:
    """``<host>.zip`` as written by CyLR: entry names are source paths without ``:``, with ``separator``
    between names (CyLR on Windows keeps backslashes; other builds and re-zipped copies use ``/``)."""
    entries = _drive_tree(files, separator)
    stamp = f"{collected:%Y-%m-%d %H:%M}"
    log = [f"{stamp}:00 - CyLR Version 2.2.0.0 collecting from {host}"]
    log += [f"{stamp}:01 - Collecting File: {path}" for path in files]
    log.append(f"{stamp}:03 - Extraction complete. {len(files)} files collected")
    entries["CyLR.log"] = "".join(line + "\r\n" for line in log).encode()
    target = out_dir / f"{host}.zip"
    _write_zip(target, entries, collected)
    return target


def write_windows_root(out_dir: Path, host: str, files: Files, collected: datetime = COLLECTED) -> Path:
    """``<host>/Program Files/...``: a copied or mounted C: volume (other drives are refused)."""
    root = out_dir / host
    _replace_dir(root)
    tree = {}
    for path, data in files.items():
        drive, parts = _split(path)
        if drive != "C":
            raise ValueError(f"windows-root layout holds drive C: only, not {path}")
        tree["/".join(parts)] = data
    _write_tree(root, tree)
    return root


def loose_name(path: str) -> str | None:
    """Where an administrator's copy puts a log: ``...\\Logging\\HttpProxy\\Owa\\x.LOG`` -> ``HttpProxy/Owa/x.LOG``,
    ``Rps_Http_*.LOG`` at the top, IIS logs under ``IIS/W3SVC<n>/``, event logs under ``EventLogs/``;
    ``None`` for a file the copy leaves out."""
    for fragment, folder in LOOSE_FOLDERS:
        _, found, rest = path.partition(fragment)
        if found:
            return (folder + rest).replace("\\", "/")
    return None


def write_files(out_dir: Path, host: str, files: Files, collected: datetime = COLLECTED) -> Path:
    """``<host>/``: the HttpProxy, Rps_Http, IIS and event logs copied into relative folders, without a drive
    root (read by content)."""
    root = out_dir / host
    _replace_dir(root)
    _write_tree(root, {name: data for path, data in files.items() if (name := loose_name(path)) is not None})
    return root


WRITERS: dict[str, Callable[[Path, str, Files, datetime], Path]] = {
    "kape": write_kape,
    "kape-zip": write_kape_zip,
    "velociraptor": write_velociraptor,
    "velociraptor-dir": write_velociraptor_dir,
    "cylr": write_cylr,
    "cylr-slash": partial(write_cylr, separator="/"),
    "windows-root": write_windows_root,
    "files": write_files,
}

"""Write a host's files (keyed by Windows path) in the layout of a collection tool.

Layouts (style_ecosystem.md §B.1): ``kape`` (``<host>/C/...``, one folder per drive),
``velociraptor`` (offline-collector zip, ``uploads/auto/C%3A/...``), ``cylr`` (zip with
``C\\...`` backslash entries and ``CyLR.log``) and ``windows-root`` (``<host>/Program Files``...,
drive C: only). Zips are byte-for-byte reproducible: sorted entries, fixed timestamps.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

Files = Mapping[str, bytes]
#: When the demo collections were taken (zip entry times and collector metadata).
COLLECTED = (2021, 3, 9, 10, 0, 0)
COLLECTED_ISO = "2021-03-09T10:00:00Z"
COLLECTED_UNIX = 1615284000
_VELOCIRAPTOR_ESCAPED = frozenset('?"*:|<>%/\\')


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


def _write_zip(target: Path, entries: Mapping[str, bytes]) -> None:
    with zipfile.ZipFile(target, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo("entry", date_time=COLLECTED)
            info.filename = name  # set after construction: ZipInfo would turn "\" into "/" on Windows
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0
            info.external_attr = 0x20  # FILE_ATTRIBUTE_ARCHIVE
            archive.writestr(info, entries[name], compresslevel=6)


def write_kape(out_dir: Path, host: str, files: Files) -> Path:
    """``<host>/<drive letter>/<path>``, as KAPE's ``--tdest`` with recreated directories."""
    root = out_dir / host
    _replace_dir(root)
    tree = {}
    for path, data in files.items():
        drive, parts = _split(path)
        tree["/".join([drive, *parts])] = data
    _write_tree(root, tree)
    return root


def velociraptor_name(component: str) -> str:
    """Escape one path component like Velociraptor's ``SanitizeStringForZip``."""
    chars = [f"%{ord(c):02X}" if c in _VELOCIRAPTOR_ESCAPED or c < " " else c for c in component]
    for index in (0, -1):
        if chars and chars[index] in (".", " "):
            chars[index] = f"%{ord(chars[index]):02X}"
    return "".join(chars)


def write_velociraptor(out_dir: Path, host: str, files: Files) -> Path:
    """``<host>.zip`` as written by a Velociraptor offline collector (metadata approximated)."""
    entries: dict[str, bytes] = {}
    uploads = []
    for path, data in files.items():
        drive, parts = _split(path)
        name = "/".join(velociraptor_name(part) for part in [f"{drive}:", *parts])
        entries[f"uploads/auto/{name}"] = data
        uploads.append({"Path": path, "Size": len(data)})
    client = {"Hostname": host, "Fqdn": f"{host}.contoso.local", "ClientId": "C.1234abcd"}
    context = {
        "client_id": "C.1234abcd", "session_id": "F.C13KQ5B8TNO2G", "create_time": COLLECTED_UNIX,
        "request": {"artifacts": ["Windows.KapeFiles.Targets"]}, "state": "FINISHED",
        "total_uploaded_files": len(files), "total_uploaded_bytes": sum(len(d) for d in files.values()),
    }
    log = [
        {"_ts": COLLECTED_UNIX, "client_time": COLLECTED_UNIX, "level": "INFO",
         "message": "Starting collection of Windows.KapeFiles.Targets"},
        {"_ts": COLLECTED_UNIX + 41, "client_time": COLLECTED_UNIX + 41, "level": "INFO",
         "message": f"Collection of Windows.KapeFiles.Targets: uploaded {len(files)} files"},
    ]
    entries |= {
        "client_info.json": json.dumps(client, indent=1).encode(),
        "collection_context.json": json.dumps(context, indent=1).encode(),
        "log.json": "".join(json.dumps(line) + "\n" for line in log).encode(),
        "uploads.json": json.dumps(uploads, indent=1).encode(),
    }
    target = out_dir / f"{host}.zip"
    _write_zip(target, entries)
    return target


def write_cylr(out_dir: Path, host: str, files: Files) -> Path:
    """``<host>.zip`` as written by CyLR: entry names are source paths without ``:`` (backslashes kept)."""
    entries = {path.replace(":", ""): data for path, data in files.items()}
    log = [f"2021-03-09 10:00:00 - CyLR Version 2.2.0.0 collecting from {host}"]
    log += [f"2021-03-09 10:00:01 - Collecting File: {path}" for path in files]
    log.append(f"2021-03-09 10:00:03 - Extraction complete. {len(files)} files collected")
    entries["CyLR.log"] = "".join(line + "\r\n" for line in log).encode()
    target = out_dir / f"{host}.zip"
    _write_zip(target, entries)
    return target


def write_windows_root(out_dir: Path, host: str, files: Files) -> Path:
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


WRITERS: dict[str, Callable[[Path, str, Files], Path]] = {
    "kape": write_kape,
    "velociraptor": write_velociraptor,
    "cylr": write_cylr,
    "windows-root": write_windows_root,
}

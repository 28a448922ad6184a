"""Copy the files the file-tree scan flagged into one zip, for the responder or a malware analyst.

The bytes are copied as they are (streamed, never executed, rendered or decompressed). Member
names are derived from the SHA-256 only (``files/<sha256>.bin``), never from the evidence path,
which an attacker chose; ``manifest.csv`` maps each Windows path to its member, hash, size and
the ids of the rules that flagged it. The same content found at several paths is stored once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from exhunt.files.scanner import CHUNK, SOURCE_KIND, _open
from exhunt.layouts.evidence import Collection, EvidenceFile
from exhunt.model import Finding

MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ("path", "sha256", "size", "rules", "member", "origin", "status")
WARNING = ("These files were flagged by exhunt as possible web shells, tools or dumps taken from a\r\n"
           "compromised server. They may be live malicious code: do not open them in a browser, do not\r\n"
           "serve them from a web server, and do not execute them. Member names are SHA-256 values;\r\n"
           "manifest.csv maps them back to the original Windows paths.\r\n")


@dataclass(frozen=True, slots=True)
class Collected:
    """What :func:`collect` wrote: members stored, manifest rows, and paths it could not copy."""

    members: int
    rows: int
    missing: tuple[str, ...]


def collect(findings: Iterable[Finding], collection: Collection, out_zip: str | os.PathLike[str]) -> Collected:
    """Copy the files behind file-tree ``findings`` of ``collection`` into a new zip ``out_zip``.

    Only findings with ``source_kind == "file"`` are collected. ``out_zip`` must not exist (it is
    created, never overwritten). A file that can no longer be read, or whose SHA-256 is not the one
    the finding recorded, is listed in the manifest with its status and not stored.
    """
    wanted: dict[tuple[str, str], set[str]] = {}
    recorded: dict[tuple[str, str], str] = {}
    for finding in findings:
        if finding.source_kind != SOURCE_KIND:
            continue
        key = (finding.source, finding.origin)
        wanted.setdefault(key, set()).add(finding.rule.id)
        if finding.evidence.get("sha256"):
            recorded[key] = finding.evidence["sha256"]
    by_path = {(evidence.path, evidence.origin): evidence for evidence in collection.files}
    by_windows_path: dict[str, EvidenceFile] = {}
    for evidence in collection.files:
        by_windows_path.setdefault(evidence.path, evidence)
    rows: list[dict[str, str]] = []
    stored: set[str] = set()
    missing: list[str] = []
    with zipfile.ZipFile(out_zip, "x", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("WARNING.txt", WARNING)
        for (path, origin), rule_ids in sorted(wanted.items()):
            evidence = by_path.get((path, origin)) or by_windows_path.get(path)
            row = {"path": path, "sha256": "", "size": "", "rules": " ".join(sorted(rule_ids)), "member": "",
                   "origin": origin, "status": ""}
            if evidence is None:
                row["status"] = "not in collection"
                missing.append(path)
                rows.append(row)
                continue
            try:
                sha256, size = _store(archive, evidence, stored)
            except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as exc:
                row["status"] = f"unreadable: {exc}"
                missing.append(path)
                rows.append(row)
                continue
            expected = recorded.get((path, origin))
            row.update(sha256=sha256, size=str(size), member=_member(sha256))
            row["status"] = "stored" if expected in (None, sha256) else f"changed since scan (was {expected})"
            rows.append(row)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=MANIFEST_FIELDS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        archive.writestr(MANIFEST, text.getvalue())
    return Collected(len(stored), len(rows), tuple(missing))


def _member(sha256: str) -> str:
    return f"files/{sha256}.bin"


def _store(archive: zipfile.ZipFile, evidence: EvidenceFile, stored: set[str]) -> tuple[str, int]:
    """Hash the file and, unless that content is stored already, stream it into the archive."""
    digest = hashlib.sha256()
    size = 0
    with _open(evidence) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    sha256 = digest.hexdigest()
    if sha256 in stored:
        return sha256, size
    info = zipfile.ZipInfo(_member(sha256), _zip_time(evidence.mtime))
    info.compress_type = zipfile.ZIP_DEFLATED
    copied = hashlib.sha256()
    with _open(evidence) as stream, archive.open(info, "w", force_zip64=True) as out:
        while chunk := stream.read(CHUNK):
            copied.update(chunk)
            out.write(chunk)
    if copied.hexdigest() != sha256:
        raise ValueError("file changed while it was copied")
    stored.add(sha256)
    return sha256, size


def _zip_time(mtime: float | None) -> tuple[int, int, int, int, int, int]:
    if mtime is None:
        return (1980, 1, 1, 0, 0, 0)
    moment = datetime.fromtimestamp(max(mtime, 315532800), UTC)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)

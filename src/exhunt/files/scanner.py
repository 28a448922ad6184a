"""The file-tree evidence source: hash and content-scan the files of the places that matter.

For every file of a collection in one of the places (:mod:`exhunt.files.places`) the scan streams
the bytes once: the SHA-256 is computed over the whole file in chunks, and the first ``max_bytes``
are kept for the YARA rules (``rules/yara/*.yar``, compiled once with YARA-X) and the IOC table
(``rules/iocs.yml``). With a baseline, known-good files of the Exchange web folders are skipped
and new or changed ones are ``BASELINE-1``. Files are opened read-only, links are never followed,
nothing is written, and content is never executed or rendered.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

import yara_x

from exhunt import diagnostics as diag
from exhunt.files.baseline import BASELINE_RULE, Baseline
from exhunt.files.iocs import SMALL_HASH_LIMIT, IocSet, shipped
from exhunt.files.places import relevant
from exhunt.files.rules import FileRules, shipped_rules
from exhunt.layouts.evidence import Collection, EvidenceFile
from exhunt.model import Diagnostic, Finding, utc_iso

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
CHUNK = 1024 * 1024
#: Longest ``matched`` evidence string (characters, after escaping).
MATCHED_CHARS = 200
SOURCE_KIND = "file"


@dataclass(frozen=True, slots=True)
class FileScan:
    """What the file-tree scan of one collection produced."""

    findings: tuple[Finding, ...]
    files_examined: int
    bytes_read: int
    diagnostics: tuple[Diagnostic, ...]


def escape(data: bytes, limit: int = MATCHED_CHARS, *, backslash: bool = True) -> str:
    """Printable ASCII as is, everything else as ``\\xNN`` (``\\n``, ``\\r``, ``\\t``), cut at ``limit`` chars.

    Backslashes are doubled (so that an escape can be told from text) unless ``backslash`` is false,
    as for Windows paths.
    """
    out: list[str] = []
    size = 0
    for byte in data:
        if byte == 0x5C and backslash:
            piece = "\\\\"
        elif 0x20 <= byte < 0x7F:
            piece = chr(byte)
        else:
            piece = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}.get(byte, f"\\x{byte:02x}")
        if size + len(piece) > limit - 3:
            out.append("...")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _open(evidence: EvidenceFile) -> IO[bytes]:
    """Open read-only without following a link; only regular files (no FIFOs or devices)."""
    if evidence.container is not None:
        return evidence.open()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(evidence.member, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"not a regular file: {evidence.member}")
        return os.fdopen(fd, "rb")
    except Exception:
        os.close(fd)
        raise


@dataclass(slots=True)
class _Read:
    sha256: str
    size: int
    head: bytes
    extra: dict[str, str]


def _read(evidence: EvidenceFile, max_bytes: int, small_kinds: frozenset[str]) -> _Read:
    digest = hashlib.sha256()
    pieces: list[bytes] = []
    kept = size = 0
    with _open(evidence) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if kept < max_bytes:
                piece = chunk[: max_bytes - kept]
                pieces.append(piece)
                kept += len(piece)
    head = b"".join(pieces)
    extra: dict[str, str] = {}
    if small_kinds and size <= min(SMALL_HASH_LIMIT, max_bytes):
        extra = {kind: hashlib.new(kind, head, usedforsecurity=False).hexdigest() for kind in sorted(small_kinds)}
    return _Read(digest.hexdigest(), size, head, extra)


def scan_files(collection: Collection, *, baseline: Baseline | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
               rules: FileRules | None = None, iocs: IocSet | None = None) -> FileScan:
    """Examine the files of ``collection`` that lie in the places the file-tree scan covers.

    Findings have ``source_kind="file"``, ``source`` = the Windows path, ``line=None``, ``time`` =
    the file's modification time (UTC) when the layout keeps it, and evidence ``sha256``, ``size``,
    ``place``, ``rule`` (YARA rule name) or ``ioc`` (indicator and source), and ``matched``
    (escaped, short). ``host`` is left empty for the caller to fill in.
    """
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    iocs = iocs or shipped()
    chosen = [(evidence, place) for evidence in collection.files
              if (place := relevant(evidence.path, iocs.path_listed)) is not None]
    if not chosen:  # e.g. a log-only collection: the YARA rules are not compiled
        return FileScan((), 0, 0, ())
    rules = rules or shipped_rules()
    scanner = rules.scanner()
    small_kinds = iocs.small_hash_kinds
    findings: list[Finding] = []
    problems: list[Diagnostic] = []
    examined = total = 0
    for evidence, place in chosen:
        file_diags = diag.FileDiagnostics(evidence.path)
        try:
            read = _read(evidence, max_bytes, small_kinds)
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, ValueError) as exc:
            file_diags.add("EXH-R001", f"file could not be read: {exc}")
            problems.extend(file_diags.finish())
            continue
        examined += 1
        total += read.size
        if read.size > max_bytes:
            file_diags.add("EXH-F001", f"file of {read.size} bytes is larger than the content-scan limit: "
                                       f"hashed in full, first {max_bytes} bytes scanned")
        findings.extend(_examine(evidence, place, read, scanner, rules, iocs, baseline, file_diags))
        problems.extend(file_diags.finish())
    findings.sort(key=Finding.sort_key)
    return FileScan(tuple(findings), examined, total, tuple(problems))


def _examine(evidence: EvidenceFile, place: str, read: _Read, scanner: yara_x.Scanner, rules: FileRules,
             iocs: IocSet, baseline: Baseline | None, file_diags: diag.FileDiagnostics) -> Iterable[Finding]:
    base = {"sha256": read.sha256, "size": str(read.size), "place": place,
            **{name: utc_iso(datetime.fromtimestamp(moment, UTC)) or "" for name, moment in evidence.times}}
    when = datetime.fromtimestamp(evidence.mtime, UTC) if evidence.mtime is not None else None

    def finding(rule, evidence_fields: dict[str, str]) -> Finding:  # type: ignore[no-untyped-def]
        return Finding(host="", rule=rule, time=when, source=evidence.path, line=None,
                       evidence={**base, **evidence_fields}, source_kind=SOURCE_KIND, origin=evidence.origin)

    out: list[Finding] = []
    if baseline is not None and baseline.covers(evidence.path):
        if baseline.known(evidence.path, read.sha256):
            return out
        out.append(finding(BASELINE_RULE, {"rule": "baseline", "matched": "not in baseline "
                                           f"({', '.join(baseline.builds[:3]) or 'empty'})"}))
    for hit in iocs.match(evidence.path, read.sha256, read.extra):
        shown = evidence.path if hit.rule.id.startswith("IOC-LOC-") else hit.indicator
        out.append(finding(hit.rule, {"ioc": f"{hit.source}: {hit.indicator}", "reference": hit.reference,
                                      "matched": escape(shown.encode("utf-8", "replace"), backslash=False)}))
    name = evidence.name
    scanner.set_global("place", place)
    scanner.set_global("filename", name)
    try:
        results = scanner.scan(read.head)
    except yara_x.TimeoutError:
        file_diags.add("EXH-F002", "content scan timed out; the file was hashed and checked against the IOCs only")
        return out
    except yara_x.ScanError as exc:
        file_diags.add("EXH-F002", f"content scan failed ({exc}); the file was hashed and checked against the "
                                   "IOCs only")
        return out
    for match in results.matching_rules:
        info = rules.infos.get(match.identifier)
        if info is None:
            continue
        shown, offset = _first_match(match, read.head, name)
        fields = {"rule": match.identifier, "matched": shown}
        if offset is not None:
            fields["offset"] = str(offset)
        out.append(finding(info, fields))
    return out


def _first_match(rule: yara_x.Rule, data: bytes, name: str) -> tuple[str, int | None]:
    """The earliest matched bytes of a rule, escaped; the file's first bytes or name for condition-only rules."""
    best: tuple[int, int] | None = None
    for pattern in rule.patterns:
        for match in pattern.matches:
            if best is None or match.offset < best[0]:
                best = (match.offset, match.length)
    if best is None:
        return (escape(data[:16]) if data else "") + f" (name {escape(name.encode('utf-8', 'replace'))})", None
    offset, length = best
    return escape(data[offset: offset + min(length, MATCHED_CHARS)]), offset

"""Known-good hashes of the Exchange web folders, keyed like the CSS-Exchange baselines.

A baseline is a CSV of ``SHA256,build,path`` rows where ``path`` is relative to the Exchange
install folder (``\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx``): the layout of the
CompareExchangeHashes.ps1 baselines Microsoft published in CSS-Exchange, which
:func:`load_baseline` reads as they are (UTF-8 with or without BOM, CRLF or LF, no header).
:func:`build_baseline` records the same from the collection of a server known to be clean. With a
baseline, a file of the Exchange web folders whose (path, hash) pair is listed is known-good and
not reported; a new or changed file is ``BASELINE-1``.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from exhunt.diagnostics import make
from exhunt.files.places import baseline_key, exchange_relative, relevant
from exhunt.layouts.evidence import Collection
from exhunt.model import Diagnostic, FindingStage, Level, RuleInfo

_SHA256 = re.compile(r"^[0-9A-Fa-f]{64}$")

BASELINE_RULE = RuleInfo(
    "BASELINE-1", "File in an Exchange web folder is new or changed compared with the baseline", Level.MEDIUM,
    FindingStage.POST, attack=("T1505.003",), path="files/baseline.py",
    references=("https://github.com/microsoft/CSS-Exchange/tree/6378e59e3d8164907f4f76441668f8a65642416e/"
                "Security/src/Baselines",),
    falsepositives=("updates and customisations made after the baseline was recorded",
                    "a baseline of another Exchange build (CSS-Exchange #350)"),
    description="The file's (install-relative path, SHA-256) pair is not in the baseline. Content and IOC "
                "rules report their own, higher-level findings on the same file.")


@dataclass(frozen=True)
class Baseline:
    """Known-good ``(install-relative path, sha256)`` pairs; paths compare case-insensitively."""

    rows: tuple[tuple[str, str, str], ...] = ()     # (SHA256 upper-case, build, path as written)
    index: Mapping[str, frozenset[str]] = field(default_factory=dict)  # casefolded path -> lower-case hashes
    #: Files that could not be read while the baseline was built (left out of it), one diagnostic each.
    unreadable: tuple[Diagnostic, ...] = ()

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str]]) -> Baseline:
        kept: list[tuple[str, str, str]] = []
        index: dict[str, set[str]] = {}
        for sha256, build, path in rows:
            path = path.replace("/", "\\")
            if not path.startswith("\\"):
                path = "\\" + path
            kept.append((sha256.upper(), build, path))
            index.setdefault(path.casefold(), set()).add(sha256.lower())
        return cls(tuple(kept), {key: frozenset(value) for key, value in index.items()})

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def builds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(build for _, build, _ in self.rows))

    def covers(self, path: str) -> bool:
        """Whether ``path`` (a Windows path) is in the Exchange web folders a baseline judges."""
        return baseline_key(path) is not None

    def known(self, path: str, sha256: str) -> bool:
        """Whether the file at Windows ``path`` with this SHA-256 is listed as known-good."""
        key = baseline_key(path)
        return key is not None and sha256.lower() in self.index.get(key, frozenset())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the CSS-Exchange layout: ``SHA256,build,path`` rows, no header, CRLF."""
        with open(path, "x", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerows(sorted(self.rows, key=lambda row: (row[2].casefold(), row[0])))


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read a baseline CSV (CSS-Exchange's or one written by :meth:`Baseline.save`).

    A header row and blank lines are skipped; a row that is not ``64-hex,build,path`` raises
    ``ValueError`` naming its line.
    """
    rows: list[tuple[str, str, str]] = []
    with open(path, encoding="utf-8-sig") as stream:
        for number, line in enumerate(stream, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(",", 2)
            if len(parts) != 3 or not _SHA256.match(parts[0].strip()):
                if number == 1 and parts[0].strip().upper() in ("SHA256", "HASH"):
                    continue
                raise ValueError(f"{path}:{number}: not a SHA256,build,path row")
            sha256, build, relative = (part.strip() for part in parts)
            rows.append((sha256, build, relative.strip('"')))
    return Baseline.from_rows(rows)


def build_baseline(collections: Iterable[Collection], build: str = "local") -> Baseline:
    """Record the SHA-256 of every file in the Exchange web folders of known-good collections.

    ``build`` labels the rows (the CSS-Exchange CSVs carry the Exchange build number there). Files
    that cannot be read are left out, each with an ``EXH-R001`` diagnostic in ``Baseline.unreadable``.
    """
    rows: list[tuple[str, str, str]] = []
    unreadable: list[Diagnostic] = []
    for collection in collections:
        for evidence in collection.files:
            if relevant(evidence.path) != "exchange-web" or baseline_key(evidence.path) is None:
                continue
            try:
                digest = evidence.sha256()
            except Exception as exc:  # a broken file or zip member is reported, never fatal
                unreadable.append(make("EXH-R001", f"left out of the baseline: {exc}", source=evidence.path))
                continue
            relative = exchange_relative(evidence.path)
            assert relative is not None
            rows.append((digest, build, relative))
    return replace(Baseline.from_rows(rows), unreadable=tuple(unreadable))


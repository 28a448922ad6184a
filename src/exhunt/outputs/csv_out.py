"""``findings.csv`` and ``hosts.csv`` for Excel, Timeline Explorer and other spreadsheet tools.

UTF-8 (a BOM only on request), a fixed column order, UTC ISO-8601 times, one physical line per
row (CR, LF and tab inside values become ``\\r``, ``\\n``, ``\\t``) and formula neutralisation as
OWASP's CSV-injection guidance describes: a cell that starts with ``=``, ``+``, ``-``, ``@``, tab
or carriage return gets a leading ``'`` so spreadsheets show it as text instead of evaluating it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from exhunt.model import Finding, HostResult, utc_iso
from exhunt.outputs.common import compact_evidence, one_line

FINDING_COLUMNS = ("host", "time", "rule", "title", "level", "stage", "cves", "client_ip", "source", "line",
                   "evidence", "origin", "source_kind", "attack")
HOST_COLUMNS = ("host", "stage", "build", "unpatched", "first_evidence", "last_evidence", "findings",
                "first_finding", "last_finding", "not_assessed")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LIST_SEPARATOR = ", "
NOT_ASSESSED_SEPARATOR = " | "


def cell(value: object) -> str:
    """A value as a safe CSV cell: one line, and never read as a formula by a spreadsheet."""
    raw = "" if value is None else str(value)
    text = one_line(raw)
    if raw.startswith(FORMULA_STARTS) or text.startswith(FORMULA_STARTS):
        text = "'" + text
    return text


def finding_row(finding: Finding) -> list[str]:
    """One finding in :data:`FINDING_COLUMNS` order."""
    values: tuple[object, ...] = (
        finding.host,
        utc_iso(finding.time),
        finding.rule.id,
        finding.rule.title,
        str(finding.rule.level),
        finding.rule.stage.value,
        LIST_SEPARATOR.join(finding.rule.cves),
        finding.client_ip,
        finding.source,
        finding.line,
        compact_evidence(finding.evidence),
        finding.origin,
        finding.source_kind,
        LIST_SEPARATOR.join(finding.rule.attack),
    )
    return [cell(value) for value in values]


def host_row(host: HostResult) -> list[str]:
    """One host in :data:`HOST_COLUMNS` order; evidence times span every source read."""
    firsts = [c.first for c in host.coverage if c.first is not None]
    lasts = [c.last for c in host.coverage if c.last is not None]
    times = [f.time for f in host.findings if f.time is not None]
    values: tuple[object, ...] = (
        host.host,
        str(host.stage),
        host.exposure.build or "unknown",
        LIST_SEPARATOR.join(host.exposure.unpatched),
        utc_iso(min(firsts, default=None)),
        utc_iso(max(lasts, default=None)),
        len(host.findings),
        utc_iso(min(times, default=None)),
        utc_iso(max(times, default=None)),
        NOT_ASSESSED_SEPARATOR.join(host.not_assessed),
    )
    return [cell(value) for value in values]


def _write(rows: Iterable[Sequence[str]], header: Sequence[str], stream: IO[str], delimiter: str) -> int:
    writer = csv.writer(stream, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def write_findings_csv(findings: Iterable[Finding], stream: IO[str], delimiter: str = ",") -> int:
    """Write the header and one row per finding to an open text stream (``newline=""``); returns rows."""
    return _write((finding_row(f) for f in findings), FINDING_COLUMNS, stream, delimiter)


def write_hosts_csv(hosts: Iterable[HostResult], stream: IO[str], delimiter: str = ",") -> int:
    """Write the header and one row per host; returns rows."""
    return _write((host_row(h) for h in hosts), HOST_COLUMNS, stream, delimiter)


def write_csv_files(findings: Iterable[Finding], hosts: Iterable[HostResult], folder: Path,
                    bom: bool = False, delimiter: str = ",") -> list[Path]:
    """Write ``findings.csv`` and ``hosts.csv`` into ``folder``; ``bom`` adds a UTF-8 BOM for Excel."""
    encoding = "utf-8-sig" if bom else "utf-8"
    findings_path, hosts_path = folder / "findings.csv", folder / "hosts.csv"
    with findings_path.open("w", encoding=encoding, newline="") as stream:
        write_findings_csv(findings, stream, delimiter)
    with hosts_path.open("w", encoding=encoding, newline="") as stream:
        write_hosts_csv(hosts, stream, delimiter)
    return [findings_path, hosts_path]

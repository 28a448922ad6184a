"""``findings.csv``, ``hosts.csv``, ``mailboxes.csv`` and ``indicators.csv`` for Excel, Timeline Explorer
and other spreadsheet tools.

UTF-8 (a BOM only on request), a fixed column order, UTC ISO-8601 times, one physical line per
row (CR, LF and tab inside values become ``\\r``, ``\\n``, ``\\t``) and formula neutralisation as
OWASP's CSV-injection guidance describes: a cell that starts with ``=``, ``+``, ``-``, ``@``, tab
or carriage return gets a leading ``'`` so spreadsheets show it as text instead of evaluating it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

from exhunt.analysis.indicators import Indicator
from exhunt.analysis.mailboxes import MailboxRow
from exhunt.analysis.scope import Scope, scope_of
from exhunt.model import Finding, HostResult, ScanResult, utc_iso
from exhunt.text import compact_evidence, one_line

FINDING_COLUMNS = ("host", "time", "rule", "title", "level", "stage", "cves", "client_ip", "source", "line",
                   "evidence", "origin", "source_kind", "attack")
HOST_COLUMNS = ("host", "stage", "build", "unpatched", "first_evidence", "last_evidence", "findings",
                "first_finding", "last_finding", "not_assessed")
MAILBOX_COLUMNS = ("host", "mailbox", "mailbox_named", "verdict", "means", "first", "last", "client_ips", "scope",
                   "basis", "notes", "evidence")
INDICATOR_COLUMNS = ("kind", "value", "first", "last", "hosts", "findings", "rules", "note")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LIST_SEPARATOR = ", "
NOT_ASSESSED_SEPARATOR = " | "
_TableWriter = Callable[[IO[str]], int]


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


def mailbox_row(row: MailboxRow) -> list[str]:
    """One mailbox verdict in :data:`MAILBOX_COLUMNS` order; ``evidence`` lists host, source:line and rule."""
    values: tuple[object, ...] = (
        row.host, row.mailbox, "yes" if row.mailbox_named else "no", row.verdict, row.means,
        utc_iso(row.first), utc_iso(row.last), LIST_SEPARATOR.join(row.client_ips), row.scope, row.basis,
        NOT_ASSESSED_SEPARATOR.join(row.notes), "; ".join(ref.label() for ref in row.evidence),
    )
    return [cell(value) for value in values]


def indicator_row(indicator: Indicator) -> list[str]:
    """One observed indicator in :data:`INDICATOR_COLUMNS` order."""
    values: tuple[object, ...] = (
        indicator.kind, indicator.value, utc_iso(indicator.first), utc_iso(indicator.last),
        LIST_SEPARATOR.join(indicator.hosts), sum(s.findings for s in indicator.sightings),
        LIST_SEPARATOR.join(indicator.rules), indicator.note,
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


def write_mailboxes_csv(rows: Iterable[MailboxRow], stream: IO[str], delimiter: str = ",") -> int:
    """Write the header and one row per mailbox verdict; returns rows."""
    return _write((mailbox_row(r) for r in rows), MAILBOX_COLUMNS, stream, delimiter)


def write_indicators_csv(indicators: Iterable[Indicator], stream: IO[str], delimiter: str = ",") -> int:
    """Write the header and one row per observed indicator; returns rows."""
    return _write((indicator_row(i) for i in indicators), INDICATOR_COLUMNS, stream, delimiter)


def write_csv_files(result: ScanResult, folder: Path, bom: bool = False, delimiter: str = ",",
                    scope: Scope | None = None) -> list[Path]:
    """Write ``findings.csv``, ``hosts.csv``, ``mailboxes.csv`` and ``indicators.csv`` into ``folder``;
    ``bom`` adds a UTF-8 BOM for Excel."""
    encoding = "utf-8-sig" if bom else "utf-8"
    scope = scope_of(result) if scope is None else scope
    tables: tuple[tuple[str, _TableWriter], ...] = (
        ("findings.csv", lambda stream: write_findings_csv(result.findings, stream, delimiter)),
        ("hosts.csv", lambda stream: write_hosts_csv(result.hosts, stream, delimiter)),
        ("mailboxes.csv", lambda stream: write_mailboxes_csv(scope.mailboxes, stream, delimiter)),
        ("indicators.csv", lambda stream: write_indicators_csv(scope.indicators, stream, delimiter)),
    )
    paths = []
    for name, write in tables:
        path = folder / name
        with path.open("w", encoding=encoding, newline="") as stream:
            write(stream)
        paths.append(path)
    return paths

"""End-of-run summary for a terminal (rich tables; no colour unless a TTY, honours NO_COLOR)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from exhunt.analysis.exposure import open_families
from exhunt.analysis.mailboxes import MailboxRow
from exhunt.analysis.scope import Scope, scope_of
from exhunt.analysis.timeline import TimelineEvent
from exhunt.model import ScanResult, Stage, location, utc_iso
from exhunt.outputs import timesketch

STAGE_STYLE = {
    Stage.UNKNOWN: "magenta",
    Stage.CLEAN: "green",
    Stage.PROBED: "yellow",
    Stage.EXPLOITED: "red",
    Stage.COMPROMISED: "bold red",
}


def render(result: ScanResult, console: Console, verbose: int = 0,
           written: Sequence[Path] = (), scope: Scope | None = None) -> None:
    """Print the host table, stage reasons, chains, what could not be assessed, incidents, coverage, the mailbox
    table, diagnostics and output files."""
    scope = scope_of(result) if scope is None else scope
    console.print(_host_table(result))
    for host in result.hosts:
        for reason in host.stage_reasons:
            console.print(f"  [bold]{escape(host.host)}[/]: {escape(reason)}", highlight=False)
        for chain in host.chains:
            console.print(f"  {escape(host.host)}: {escape(chain.summary)}", highlight=False)
        for gap in host.not_assessed:
            console.print(f"  [dim]{escape(host.host)}: {escape(gap)}[/]", highlight=False)
    for incident in scope.incidents:
        window = f"{utc_iso(incident.first) or '?'} .. {utc_iso(incident.last) or '?'}"
        console.print(f"  {escape(incident.host)} {escape(incident.id)}: {window}, "
                      f"{escape(' -> '.join(incident.step_names))}"
                      f"{' from ' + escape(', '.join(incident.attacker_ips)) if incident.attacker_ips else ''}",
                      highlight=False)
    console.print(coverage_table(result))
    if scope.mailboxes:
        console.print(mailbox_table(scope.mailboxes))
    if verbose:
        console.print(_findings_table(result))
    levels = Counter(d.level for d in result.diagnostics)
    if result.diagnostics:
        summary = ", ".join(f"{count} {level}" for level, count in sorted(levels.items()))
        console.print(f"Diagnostics: {summary} (see the JSON output for each one)", highlight=False)
    for path in written:
        console.print(f"Wrote {escape(str(path))}", highlight=False)
        if path.name == timesketch.FILE_NAME and (skipped := timesketch.untimed(result.findings)):
            console.print(f"  {skipped} finding(s) without a time left out of {path.name}", highlight=False)
    elapsed = (result.finished - result.started).total_seconds()
    console.print(f"{len(result.hosts)} host(s), {len(result.findings)} finding(s), "
                  f"{len(result.rules)} rules, {elapsed:.1f} s", highlight=False)


def _host_table(result: ScanResult) -> Table:
    table = Table(title="exhunt: hosts", show_lines=False)
    for column in ("Host", "Stage", "Build", "Unpatched", "Findings", "Evidence window", "Layout"):
        table.add_column(column)
    for host in result.hosts:
        levels = Counter(f.rule.level for f in host.findings)
        counts = " ".join(f"{levels[level]} {level}" for level in sorted(levels, reverse=True)) or "0"
        window = [c for c in host.coverage if c.first is not None]
        first = min((c.first for c in window if c.first), default=None)
        last = max((c.last for c in window if c.last), default=None)
        span = f"{utc_iso(first)} .. {utc_iso(last)}" if first else "-"
        exposure = host.exposure
        table.add_row(
            escape(host.host),
            f"[{STAGE_STYLE[host.stage]}]{host.stage}[/]",
            escape(exposure.build or "unknown"),
            ", ".join(open_families(exposure))
            or ("-" if exposure.status == "known" else "unknown"),
            counts,
            span,
            host.layout,
        )
    return table


def _findings_table(result: ScanResult) -> Table:
    table = Table(title="exhunt: findings")
    for column in ("Time (UTC)", "Host", "Rule", "Level", "Stage", "Client", "Source:line"):
        table.add_column(column)
    for finding in result.findings:
        table.add_row(
            utc_iso(finding.time) or "-",
            escape(finding.host),
            escape(finding.rule.id),
            str(finding.rule.level),
            finding.rule.stage.value,
            escape(finding.client_ip or "-"),
            escape(location(finding.source, finding.line)),
        )
    return table


def coverage_table(result: ScanResult) -> Table:
    """What was read per host and source: files, records, the time range covered, diagnostics."""
    table = Table(title="exhunt: coverage")
    for column in ("Host", "Source", "Files", "Records", "From (UTC)", "To (UTC)", "Diagnostics"):
        table.add_column(column)
    for host in result.hosts:
        for cov in host.coverage:
            if ":" in cov.kind:  # per-channel parts of event logs: the total row says enough here
                continue
            table.add_row(escape(host.host), cov.kind, str(cov.files), str(cov.records), utc_iso(cov.first) or "-",
                          utc_iso(cov.last) or "-", str(cov.diagnostics))
    return table


def mailbox_table(rows: Sequence[MailboxRow]) -> Table:
    """The per-mailbox verdicts, each with how many evidence rows justify it."""
    table = Table(title="exhunt: mailboxes")
    for column in ("Host", "Mailbox", "Verdict", "Means", "First (UTC)", "Client", "Evidence"):
        table.add_column(column)
    for row in rows:
        table.add_row(escape(row.host), escape(row.mailbox), row.verdict, escape(row.means),
                      utc_iso(row.first) or "-", escape(", ".join(row.client_ips) or "-"), str(len(row.evidence)))
    return table


def timeline_table(rows: Sequence[TimelineEvent]) -> Table:
    """Timeline rows in the order given."""
    table = Table(title="exhunt: timeline")
    for column in ("Time (UTC)", "Host", "Rule", "Level", "Client", "Source:line", "What"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(utc_iso(row.time) or "-", escape(row.host), escape(row.rule), row.level,
                      escape(row.client_ip or "-"), escape(location(row.source, row.line)),
                      escape(row.description))
    return table

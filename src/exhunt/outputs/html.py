"""``report.html``: one self-contained, printable HTML report of a scan.

The file needs nothing but itself: inline CSS, inline SVG charts, no JavaScript, no fonts, images,
scripts or styles from anywhere else, and a Content-Security-Policy that forbids loading any of
them. Collapsible parts are ``<details>`` blocks (opened for printing by the print stylesheet).

Everything read from the evidence (host names, paths, URLs, user agents, command lines, rule
output) may have been written by an attacker. All text, whatever its origin, goes through
:func:`text`: invalid code points (lone surrogates) are replaced, control, bidirectional and
zero-width characters are shown as visible ``\\xNN``/``\\uNNNN`` escapes, and the result is
escaped with ``html.escape(..., quote=True)``. Evidence is only ever written as element text:
never into attributes, URLs, ``<style>``, ``<script>`` (there is none) or event handlers. Element
ids are ``host-<n>`` (1-based position in the scan), so the same result gives the same bytes.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from exhunt import __version__
from exhunt.analysis.exposure import FAMILY_LABELS, open_families
from exhunt.analysis.fleet import Pivot, first_compromise
from exhunt.analysis.incidents import Incident
from exhunt.analysis.mailboxes import NOT_ASSESSABLE, MailboxRow
from exhunt.analysis.scope import Scope, scope_of
from exhunt.engine.pivot import PREFIX as PIVOT_PREFIX
from exhunt.model import (
    ChainActivity,
    Diagnostic,
    Finding,
    HostResult,
    Level,
    ScanResult,
    SourceCoverage,
    Stage,
    location,
    utc_iso,
)
from exhunt.text import escape_char

FILE_NAME = "report.html"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
#: Evidence values longer than this are cut in the report (the JSON outputs keep them whole).
VALUE_LIMIT = 2000
#: At most this many bars per chart; longer windows are grouped into several days per bar.
MAX_BARS = 184

LEVELS_DESC = tuple(sorted(Level, reverse=True))
LEVEL_COLOURS = {
    Level.CRITICAL: "#991b1b",
    Level.HIGH: "#ea580c",
    Level.MEDIUM: "#d4a017",
    Level.LOW: "#2563eb",
    Level.INFORMATIONAL: "#9ca3af",
}
LEVEL_SHORT = {Level.CRITICAL: "crit", Level.HIGH: "high", Level.MEDIUM: "med", Level.LOW: "low",
               Level.INFORMATIONAL: "info"}
STAGE_CLASSES = {
    Stage.UNKNOWN: "s-unknown",
    Stage.CLEAN: "s-clean",
    Stage.PROBED: "s-probed",
    Stage.EXPLOITED: "s-exploited",
    Stage.COMPROMISED: "s-compromised",
}
FINDING_STAGES = (("post", "Post-exploitation"), ("exploit", "Exploitation"), ("probe", "Probing and attempts"))

#: Surrogate code points (only lone ones can reach a ``str``): replaced by U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: C0/C1 controls and DEL (tab and line breaks included: shown, not interpreted), line and paragraph
#: separators, zero-width and bidirectional formatting characters, the BOM and noncharacters.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
    "\ufdd0-\ufdef\ufff9-\ufffb\ufffe\uffff]"
    "|[\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff\U0004fffe\U0004ffff\U0005fffe\U0005ffff"
    "\U0006fffe\U0006ffff\U0007fffe\U0007ffff\U0008fffe\U0008ffff\U0009fffe\U0009ffff\U000afffe\U000affff"
    "\U000bfffe\U000bffff\U000cfffe\U000cffff\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff"
    "\U0010fffe\U0010ffff]"
)


def clean(value: object) -> str:
    """``value`` as text that is valid in an HTML document and shows every character it holds."""
    raw = "" if value is None else str(value)
    raw = _SURROGATE.sub("\ufffd", raw)
    return _INVISIBLE.sub(escape_char, raw)


def text(value: object, limit: int | None = None) -> str:
    """Any value as escaped element text (the only way anything reaches the document)."""
    shown = clean(value)
    if limit is not None and len(shown) > limit:
        shown = shown[:limit] + f"… ({len(shown) - limit} more characters)"
    return html.escape(shown, quote=True)


def _time(moment: datetime | None) -> str:
    return text(utc_iso(moment) or "—")


def _span(window: tuple[datetime | None, datetime | None]) -> str:
    return f"{_time(window[0])} .. {_time(window[1])}"


def _time_wrap(moment: datetime | None) -> str:
    """Like :func:`_time`, with a line-break opportunity (no character) between date and time."""
    return _time(moment).replace("T", "<wbr>T", 1)


def _cell(content: str, cls: str = "") -> str:
    """A table cell around already escaped content; ``cls`` is one of this module's constants."""
    return f'<td class="{cls}">{content}</td>' if cls else f"<td>{content}</td>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"


def _badge(stage: Stage) -> str:
    return f'<span class="badge {STAGE_CLASSES[stage]}">{text(stage)}</span>'


def _level(level: Level) -> str:
    return f'<span class="lvl l-{level.name.lower()}">{text(level)}</span>'


def _list(items: Iterable[str], empty: str) -> str:
    entries = [f"<li>{text(item)}</li>" for item in items]
    return f"<ul>{''.join(entries)}</ul>" if entries else f'<p class="muted">{text(empty)}</p>'


# --- facts per host ------------------------------------------------------------------------------

def attacker_window(host: HostResult) -> tuple[datetime | None, datetime | None]:
    """First and last time of the host's findings at level ``medium`` or above."""
    times = [f.time for f in host.findings if f.time is not None and f.rule.level >= Level.MEDIUM]
    return (min(times), max(times)) if times else (None, None)


def evidence_window(host: HostResult) -> tuple[datetime | None, datetime | None]:
    """The span of the host's evidence: every source's first and last record, and every finding."""
    moments = [c.first for c in host.coverage if c.first] + [c.last for c in host.coverage if c.last]
    moments += [f.time for f in host.findings if f.time is not None]
    return (min(moments), max(moments)) if moments else (None, None)


def _families(host: HostResult) -> str:
    exposure = host.exposure
    if exposure.status != "known" and not exposure.unpatched:
        return text("unknown")
    return "<br>".join(text(part) for part in open_families(exposure)) or text("none")


def _chain_line(chain: ChainActivity) -> str:
    label = FAMILY_LABELS.get(chain.chain, chain.chain)
    if chain.exposed is True:
        state = f"exposed ({len(chain.open_cves)} CVE(s) open)" if chain.open_cves else "exposed"
    elif chain.exposed is False:
        state = "fixed: attempts only"
    else:
        state = "exposure unknown"
    return f"{label} on {chain.build or 'unknown build'}: {state}"


def _chains(host: HostResult) -> str:
    if not host.chains:
        return text("—")
    return "<br>".join(text(_chain_line(chain)) for chain in host.chains)


def _mitigations(host: HostResult) -> str:
    if not host.exposure.mitigations:
        return text("none found")
    return "<br>".join(text(m.label or m.name) for m in host.exposure.mitigations)


# --- document ------------------------------------------------------------------------------------

def render_html(result: ScanResult, command: str = "", scope: Scope | None = None) -> str:
    """The whole report as one HTML document (a ``str``; write it as UTF-8)."""
    scope = scope_of(result) if scope is None else scope
    found, mailboxes = scope.incidents, scope.mailboxes
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP, quote=True)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light">',
        f"<title>exhunt report — {len(result.hosts)} host(s) — {text(utc_iso(result.finished))}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>exhunt report</h1>",
        _run_metadata(result, command),
        "</header>",
        "<main>",
        _summary(result, mailboxes),
        _pivots(scope.fleet.pivots),
        *(_host_section(index, host, [i for i in found if i.host == host.host],
                        [m for m in mailboxes if m.host == host.host])
          for index, host in enumerate(result.hosts, start=1)),
        _diagnostics(result.diagnostics),
        "</main>",
        '<footer><p class="muted">Generated by exhunt ' + text(__version__) + ". All times are UTC "
        "(ISO-8601). Text from the evidence is shown as-is, with control, bidirectional and zero-width "
        "characters written as \\xNN / \\uNNNN escapes; long values are cut (the JSON outputs hold them "
        "whole).</p></footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(result: ScanResult, path: str | Path, command: str = "", scope: Scope | None = None) -> Path:
    """Write :func:`render_html` to ``path`` as UTF-8 and return the path."""
    target = Path(path)
    target.write_text(render_html(result, command, scope), encoding="utf-8", newline="\n")
    return target


def _run_metadata(result: ScanResult, command: str) -> str:
    options = dict(result.options)
    paths = options.pop("paths", None)
    elapsed = (result.finished - result.started).total_seconds()
    findings = result.findings
    rows = [
        ("exhunt version", text(__version__)),
        ("Command", f"<code>{text(command or '—')}</code>"),
        ("Started", _time(result.started)),
        ("Finished", _time(result.finished)),
        ("Elapsed", text(f"{elapsed:.3f} s")),
        ("Rules", text(len(result.rules))),
        ("Paths scanned", _list((str(p) for p in paths or ()), "—")),
        ("Hosts", text(len(result.hosts))),
        ("Findings", text(len(findings))),
        ("Diagnostics", text(len(result.diagnostics))),
    ]
    for key in sorted(options, key=str):
        value = options[key]
        if value in (None, "", [], ()):
            continue
        if isinstance(value, datetime):
            value = utc_iso(value)
        elif isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        rows.append((f"Option {key}", text(value)))
    body = "".join(f"<tr><th>{text(name)}</th><td>{content}</td></tr>" for name, content in rows)
    return f'<table class="meta"><tbody>{body}</tbody></table>'


def _summary(result: ScanResult, mailboxes: Sequence[MailboxRow]) -> str:
    headers = ["Host", "Stage", "Build / product", "Unpatched CVEs", "Mitigations", "Chains (exposure then)",
               "First compromise", "First attacker activity", "Last attacker activity", "Mailboxes",
               *(LEVEL_SHORT[level] for level in LEVELS_DESC)]
    rows = []
    for index, host in enumerate(result.hosts, start=1):
        levels = Counter(f.rule.level for f in host.findings)
        first, last = attacker_window(host)
        exposure = host.exposure
        build = text(exposure.build or "unknown")
        if exposure.product:
            build += f'<br><span class="muted">{text(exposure.product)}</span>'
        rows.append([
            _cell(f'<a href="#host-{index}">{text(host.host)}</a>'),
            _cell(_badge(host.stage)),
            _cell(build),
            _cell(_families(host)),
            _cell(_mitigations(host)),
            _cell(_chains(host)),
            _cell(_time_wrap(first_compromise(host)), "time"),
            _cell(_time_wrap(first), "time"),
            _cell(_time_wrap(last), "time"),
            _cell(_mailbox_counts([m for m in mailboxes if m.host == host.host])),
            *(_cell(text(levels[level]) if levels[level] else '<span class="muted">0</span>', "num")
              for level in LEVELS_DESC),
        ])
    table = _table(headers, rows, "summary")
    note = ("<p class=\"muted\">Attacker activity: first and last finding at level medium or above. "
            "crit/high/med/low/info: findings per level. "
            "First compromise: the first exploit or post-exploitation finding at medium or above. "
            "Chains: the build the host ran when each campaign's activity began and whether it left that "
            "campaign's CVEs open. Mailboxes: rows of the mailbox table per verdict.</p>")
    return f'<section class="summary-section"><h2>Executive summary</h2>\n{table}\n{note}</section>'


def _mailbox_counts(rows: Sequence[MailboxRow]) -> str:
    counts = Counter(row.verdict for row in rows)
    return "<br>".join(f"{text(count)} {text(verdict)}" for verdict, count in counts.items()) or "—"


def _pivots(found: Sequence[Pivot]) -> str:
    if not found:
        return ""
    rows = [[
        _cell(text(p.kind)),
        _cell(text(p.value, VALUE_LIMIT), "evidence"),
        _cell("<br>".join(f"{text(s.host)}: {_time(s.first)} ({text(', '.join(s.rules))})" for s in p.sightings)),
        _cell(text(p.note or "—")),
    ] for p in found]
    return ('<section><h2>Seen on several hosts</h2>\n'
            + _table(["Kind", "Value", "Hosts (first seen, rules)", "Note"], rows)
            + '\n<p class="muted">PIVOT-* rules: the value was found again in that host\'s web logs by the '
            "pivot pass.</p></section>")


def _incidents(found: Sequence[Incident]) -> str:
    if not found:
        return '<p class="muted">No attacker activity grouped into an incident.</p>'
    rows = []
    for incident in found:
        steps = "<br>".join(f"{text(step.step)}: {_time(step.first)} ({text(len(step.evidence))} finding(s))"
                            for step in incident.steps)
        gaps = "<br>".join(f"{text(gap.step)}: {text(gap.explanation)}" for gap in incident.gaps) or "—"
        rows.append([
            _cell(text(incident.id)),
            _cell(_time(incident.first) + " ..<br>" + _time(incident.last), "nowrap"),
            _cell(text(", ".join(incident.attacker_ips) or "—")),
            _cell(text(", ".join(incident.user_agents) or "—", VALUE_LIMIT)),
            _cell(text(", ".join(incident.shells) or "—")),
            _cell(steps),
            _cell(gaps),
        ])
    return _table(["Incident", "Activity", "Attacker addresses", "User agents", "Shells", "Steps reached",
                   "Gaps"], rows)


def _mailbox_table(rows: Sequence[MailboxRow]) -> str:
    if not rows:
        return f'<p class="muted">No mailbox access shown by the evidence read. {text(NOT_ASSESSABLE)}</p>'
    body = [[
        _cell(text(row.mailbox)),
        _cell(text(row.verdict)),
        _cell(text(row.means)),
        _cell(_time(row.first) + " ..<br>" + _time(row.last), "nowrap"),
        _cell(text(", ".join(row.client_ips) or "—")),
        _cell(text(row.scope)),
        _cell(_list(row.notes, "—")),
        _cell(_list((ref.label() for ref in row.evidence), "—"), "evidence"),
    ] for row in rows]
    table = _table(["Mailbox", "Verdict", "Means", "When", "Client", "Scope", "Notes", "Evidence"], body)
    return f'{table}\n<p class="muted">{text(NOT_ASSESSABLE)}</p>'


def _host_section(index: int, host: HostResult, found: Sequence[Incident], mailboxes: Sequence[MailboxRow]) -> str:
    exposure = host.exposure
    facts = [
        ("Stage", _badge(host.stage)),
        ("Layout", text(host.layout)),
        ("Evidence", _list(host.evidence, "—")),
        ("Build", text(exposure.build or "unknown") + (f" ({text(exposure.product)})" if exposure.product else "")),
        ("Build status", text(exposure.status)),
        ("Builds seen", text(", ".join(exposure.builds_seen) or "—")),
        ("Unpatched CVEs", text(", ".join(exposure.unpatched) or ("none" if exposure.status == "known"
                                                                  else "unknown"))),
        ("Exposure notes", _list(exposure.notes, "—")),
        ("Mitigations", _mitigation_list(host)),
        ("Evidence window", _span(evidence_window(host))),
        ("Attacker activity", _span(attacker_window(host))),
    ]
    fact_rows = "".join(f"<tr><th>{text(name)}</th><td>{content}</td></tr>" for name, content in facts)
    parts = [
        f'<section class="host" id="host-{index}">',
        f"<h2>{text(host.host)} {_badge(host.stage)}</h2>",
        f'<table class="meta"><tbody>{fact_rows}</tbody></table>',
        "<h3>Why this stage</h3>",
        _list(host.stage_reasons, "No finding moves this host beyond its stage."),
        "<h3>Campaigns</h3>",
        _chain_table(host.chains),
        "<h3>Incidents</h3>",
        _incidents(found),
        "<h3>Mailboxes</h3>",
        _mailbox_table(mailboxes),
        "<h3>Activity (findings per day, UTC)</h3>",
        activity_chart(host),
        "<h3>Coverage</h3>",
        _coverage(host.coverage),
        "<h3>Not assessed</h3>",
        _list(host.not_assessed, "Every CVE was assessed from the evidence."),
        "<h3>Assessed</h3>",
        _list(host.assessed, "Nothing could be assessed."),
        _findings(host),
        "</section>",
    ]
    return "\n".join(parts)


def _mitigation_list(host: HostResult) -> str:
    items = []
    for m in host.exposure.mitigations:
        where = f"{m.source}:{m.line}"
        seen = f", file modified {utc_iso(m.seen)}" if m.seen else ""
        items.append(f"{m.label or m.name} (covers {', '.join(m.covers) or '—'}; {where}{seen})")
    return _list(items, "none found")


def _chain_table(chains: Sequence[ChainActivity]) -> str:
    if not chains:
        return '<p class="muted">No campaign activity.</p>'
    rows = []
    for chain in chains:
        exposed = {True: "yes", False: "no (fixed)", None: "unknown"}[chain.exposed]
        rows.append([
            _cell(text(FAMILY_LABELS.get(chain.chain, chain.chain))),
            _cell(_time(chain.first), "nowrap"),
            _cell(_time(chain.last), "nowrap"),
            _cell(text(chain.findings), "num"),
            _cell(text(chain.build or "unknown")),
            _cell(text(exposed)),
            _cell(text(", ".join(chain.open_cves) or "—")),
            _cell(text(chain.summary)),
        ])
    return _table(["Campaign", "First", "Last", "Findings", "Build then", "Exposed", "Open CVEs", "Summary"], rows)


def _coverage(coverage: Sequence[SourceCoverage]) -> str:
    if not coverage:
        return '<p class="muted">No evidence exhunt reads was found for this host.</p>'
    rows = [[
        _cell(text(c.kind)),
        _cell(text(c.files), "num"),
        _cell(text(c.records), "num"),
        _cell(_time(c.first), "nowrap"),
        _cell(_time(c.last), "nowrap"),
        _cell(text(c.diagnostics), "num"),
    ] for c in coverage]
    return _table(["Source", "Files", "Records", "First", "Last", "Diagnostics"], rows)


def _order(finding: Finding) -> tuple[str, str, int, str]:
    return (utc_iso(finding.time) or "~", finding.source, finding.line or 0, finding.rule.id)


def _findings(host: HostResult) -> str:
    if not host.findings:
        return '<h3>Findings</h3><p class="muted">No findings.</p>'
    groups = []
    detections = [f for f in host.findings if not f.rule.id.startswith(PIVOT_PREFIX)]
    for stage, label in FINDING_STAGES:
        members = sorted((f for f in detections if f.rule.stage.value == stage), key=_order)
        if not members:
            continue
        levels = Counter(f.rule.level for f in members)
        counts = ", ".join(f"{levels[level]} {level}" for level in LEVELS_DESC if levels[level])
        rows = [_finding_row(f) for f in members]
        table = _table(["Time (UTC)", "Rule", "Level", "Title", "CVEs", "Client IP", "Source:line", "Evidence"],
                       rows, "findings")
        groups.append(f"<details open><summary>{text(label)} ({text(stage)}): {text(len(members))} "
                      f"finding(s) — {text(counts)}</summary>\n{table}\n</details>")
    context = sorted((f for f in host.findings if f.rule.id.startswith(PIVOT_PREFIX)), key=_order)
    if context:
        table = _table(["Time (UTC)", "Rule", "Level", "Title", "CVEs", "Client IP", "Source:line", "Evidence"],
                       [_finding_row(f) for f in context], "findings")
        groups.append(f"<details><summary>Context (pivot pass): {text(len(context))} request(s) linked to "
                      f"attacker activity</summary>\n{table}\n</details>")
    return (f"<details open class=\"host-findings\"><summary><h3>Findings ({text(len(host.findings))})</h3>"
            f"</summary>\n" + "\n".join(groups) + "\n</details>")


def _finding_row(finding: Finding) -> list[str]:
    where = location(finding.source, finding.line)
    origin = (f'<br><span class="muted">{text(finding.source_kind)} · {text(finding.origin)}</span>'
              if finding.origin or finding.source_kind else "")
    return [
        _cell(_time(finding.time), "nowrap"),
        _cell(text(finding.rule.id), "nowrap"),
        _cell(_level(finding.rule.level)),
        _cell(text(finding.rule.title)),
        _cell("<br>".join(text(cve) for cve in finding.rule.cves) or text("—"), "nowrap"),
        _cell(text(finding.client_ip or "—")),
        _cell(f"<code>{text(where)}</code>{origin}", "wrap"),
        _cell(_evidence(finding.evidence), "wrap"),
    ]


def _evidence(evidence: Mapping[str, object]) -> str:
    if not evidence:
        return '<span class="muted">—</span>'
    pairs = "".join(f'<div class="kv"><span class="k">{text(key, 200)}</span>=<span class="v">'
                    f"{text(value, VALUE_LIMIT)}</span></div>" for key, value in evidence.items())
    return pairs


def _diagnostics(diagnostics: Sequence[Diagnostic]) -> str:
    if not diagnostics:
        return '<section><h2>Diagnostics</h2><p class="muted">No diagnostics.</p></section>'
    levels = Counter(d.level for d in diagnostics)
    counts = ", ".join(f"{count} {level}" for level, count in sorted(levels.items()))
    rows = [[
        _cell(text(d.code), "nowrap"),
        _cell(text(d.level)),
        _cell(text(d.host or "—")),
        _cell(f"<code>{text(d.source or '—')}</code>", "wrap"),
        _cell(text(d.line if d.line is not None else "—"), "num"),
        _cell(text(d.offset if d.offset is not None else "—"), "num"),
        _cell(text(d.message, VALUE_LIMIT), "wrap"),
    ] for d in diagnostics]
    table = _table(["Code", "Level", "Host", "Source", "Line", "Offset", "Message"], rows, "diagnostics")
    return (f"<section><h2>Diagnostics</h2><details open><summary>{text(len(diagnostics))} diagnostic(s): "
            f"{text(counts)}</summary>\n{table}\n</details></section>")


# --- activity chart ------------------------------------------------------------------------------

_W, _H = 960, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 14, 62


def activity_chart(host: HostResult) -> str:
    """Findings per UTC day over the host's evidence window as an inline SVG, stacked by level."""
    start, end = evidence_window(host)
    dated = [f for f in host.findings if f.time is not None]
    undated = len(host.findings) - len(dated)
    head = (f'<svg class="chart" viewBox="0 0 {_W} {_H}" '
            f'width="{_W}" height="{_H}" role="img">')
    title = f"<title>Findings per day (UTC) on {text(host.host)}</title>"
    if start is None or end is None:
        body = (f'<text x="{_W // 2}" y="{_H // 2}" text-anchor="middle" class="axis">'
                f"{text('no dated evidence')}</text>")
        return f"{head}{title}{body}</svg>" + _undated_note(undated)
    first_day = start.astimezone(UTC).date()
    last_day = end.astimezone(UTC).date()
    days = (last_day - first_day).days + 1
    width_days = max(1, math.ceil(days / MAX_BARS))
    buckets = math.ceil(days / width_days)
    counts: list[Counter[Level]] = [Counter() for _ in range(buckets)]
    for finding in dated:
        offset = (finding.time.astimezone(UTC).date() - first_day).days  # type: ignore[union-attr]
        counts[offset // width_days][finding.rule.level] += 1
    top = max((sum(c.values()) for c in counts), default=0)
    scale_max = _nice(top)
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM
    slot = plot_w / buckets
    bar_w = min(40.0, max(1.0, slot * 0.8))
    parts = [head, title]
    # Grid and y axis.
    for tick in _ticks(scale_max):
        y = _TOP + plot_h - plot_h * tick / scale_max
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{tick}</text>')
    parts.append(f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - _RIGHT}" y2="{_TOP + plot_h}" class="base"/>')
    # Bars: stacked from informational (bottom) to critical (top).
    for i, bucket in enumerate(counts):
        total = sum(bucket.values())
        if not total:
            continue
        x = _LEFT + i * slot + (slot - bar_w) / 2
        y_base = _TOP + plot_h
        day = first_day + timedelta(days=i * width_days)
        label = _bucket_label(day, width_days, last_day)
        detail = ", ".join(f"{bucket[level]} {level}" for level in LEVELS_DESC if bucket[level])
        parts.append(f"<g><title>{text(f'{label} (UTC): {total} finding(s): {detail}')}</title>")
        for level in sorted(bucket):
            height = plot_h * bucket[level] / scale_max
            y_base -= height
            parts.append(f'<rect x="{x:.1f}" y="{y_base:.1f}" width="{bar_w:.1f}" height="{height:.1f}" '
                         f'fill="{LEVEL_COLOURS[level]}"/>')
        parts.append("</g>")
    # X axis date labels (UTC), at most eight.
    step = max(1, math.ceil(buckets / 8))
    label_indices = list(range(0, buckets, step))
    if buckets - 1 not in label_indices and (buckets - 1 - label_indices[-1]) * slot > 80:
        label_indices.append(buckets - 1)
    for i in label_indices:
        day = first_day + timedelta(days=i * width_days)
        x = _LEFT + i * slot + slot / 2
        y = _TOP + plot_h
        parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" class="base"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 16}" text-anchor="middle" class="axis">{day.isoformat()}</text>')
    unit = "day" if width_days == 1 else f"{width_days} days"
    caption = f"UTC date; one bar per {unit}; window {first_day.isoformat()} .. {last_day.isoformat()}"
    parts.append(f'<text x="{_LEFT}" y="{_H - 26}" class="axis">{text(caption)}</text>')
    # Legend.
    x = _LEFT
    for level in LEVELS_DESC:
        parts.append(f'<rect x="{x}" y="{_H - 14}" width="10" height="10" fill="{LEVEL_COLOURS[level]}"/>')
        parts.append(f'<text x="{x + 14}" y="{_H - 5}" class="axis">{text(level)}</text>')
        x += 28 + 7 * len(str(level))
    parts.append("</svg>")
    return "".join(parts) + _undated_note(undated)


def _undated_note(undated: int) -> str:
    if not undated:
        return ""
    return f'<p class="muted">{text(undated)} finding(s) without a time are not in the chart.</p>'


def _bucket_label(day: date, width_days: int, last_day: date) -> str:
    if width_days == 1:
        return day.isoformat()
    until = min(day + timedelta(days=width_days - 1), last_day)
    return f"{day.isoformat()} .. {until.isoformat()}"


def _nice(value: int) -> int:
    """The smallest 1/2/5 x 10^n at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(value)) - 1)
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude


def _ticks(scale_max: int) -> list[int]:
    if scale_max <= 4:
        return list(range(0, scale_max + 1))
    return [round(scale_max * k / 4) for k in range(5)] if scale_max % 4 == 0 else \
        [round(scale_max * k / 5) for k in range(6)]


_CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#d1d5db;--head:#f3f4f6}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
background:#fff;margin:0 auto;padding:16px 24px;max-width:1600px}
h1{font-size:24px;margin:0 0 8px}
h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px;display:inline-block}
section.host{border-top:4px solid var(--line);margin-top:28px}
table{border-collapse:collapse;width:100%;margin:4px 0 10px}
th,td{border:1px solid var(--line);padding:3px 6px;text-align:left;vertical-align:top}
thead th{background:var(--head)}
table.meta{width:auto}table.meta th{background:var(--head);white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.nowrap{white-space:nowrap}
td.time{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table.summary{font-size:13px}
td.wrap,code,.v,.k{overflow-wrap:anywhere;word-break:break-word}
code,.kv{font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.kv{margin:0 0 2px}.k{color:#374151;font-weight:600}.v{white-space:pre-wrap}
.muted{color:var(--muted)}
ul{margin:2px 0 8px;padding-left:20px}
td p,td ul{margin:0}
table.findings td:nth-child(7){width:20%}table.findings td:nth-child(8){width:36%}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
summary h3{margin:10px 0 4px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:700;color:#fff;
text-transform:uppercase;letter-spacing:.03em;vertical-align:middle}
.s-unknown{background:#a21caf}.s-clean{background:#15803d}.s-probed{background:#b45309}
.s-exploited{background:#dc2626}.s-compromised{background:#450a0a}
.lvl{font-weight:600}.l-critical{color:#991b1b}.l-high{color:#c2410c}.l-medium{color:#a16207}
.l-low{color:#1d4ed8}.l-informational{color:#6b7280}
svg.chart{display:block;width:100%;max-width:960px;height:auto;border:1px solid var(--line);background:#fff}
svg .axis{font:11px system-ui,sans-serif;fill:#374151}
svg .grid{stroke:#e5e7eb;stroke-width:1}svg .base{stroke:#6b7280;stroke-width:1}
@media print{
@page{size:A4 landscape;margin:12mm}
body{font-size:10px;max-width:none;padding:0}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
a{color:inherit;text-decoration:none}
details::details-content{content-visibility:visible;display:block}
summary{list-style:none}
section.host{break-before:page;border-top:none}
tr,svg.chart,.kv{break-inside:avoid}
thead{display:table-header-group}
h2,h3{break-after:avoid}
}
"""

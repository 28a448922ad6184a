"""Host stage, CVE assessability and coverage: what the evidence supports, and what it cannot say."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from exhunt.analysis.chains import BuildSeen, build_at, open_cves
from exhunt.model import Finding, Level, SourceCoverage, Stage, location, utc_iso

SYSMON, SECURITY = "evtx:Microsoft-Windows-Sysmon/Operational", "evtx:Security"
MANAGEMENT = "evtx:MSExchange Management"
#: CVE -> (sources that assess it, sources that assess it in part, what a full assessment needs).
CVE_EVIDENCE: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "CVE-2021-26855": (("httpproxy",), ("iis",), "Exchange HttpProxy logs (Logging\\HttpProxy)"),
    "CVE-2021-26857": (("evtx:Application",), (SYSMON, SECURITY),
                       "the Application event log (MSExchange Unified Messaging errors)"),
    "CVE-2021-26858": (("oabgenerator",), (SYSMON,), "OABGeneratorLog (Logging\\OABGeneratorLog)"),
    "CVE-2021-27065": (("ecp-server",), ("httpproxy", "iis", MANAGEMENT), "ECP server logs (Logging\\ECP\\Server)"),
    "CVE-2021-34473": (("iis",), (), "IIS logs (autodiscover.json requests)"),
    "CVE-2021-34523": (("iis",), ("rps-http",), "IIS logs (X-Rps-CAT / PowerShell back-end requests)"),
    "CVE-2021-31207": ((MANAGEMENT,), (SYSMON, "iis"),
                       "the MSExchange Management event log (New-MailboxExportRequest)"),
    "CVE-2022-41040": (("iis",), (), "IIS logs (autodiscover.json + PowerShell requests)"),
    "CVE-2022-41082": (("rps-http",), ("iis", MANAGEMENT),
                       "Rps_Http logs (Logging\\CmdletInfra\\Powershell-Proxy\\Http)"),
}
#: Findings at these levels do not move a host's stage (hunting leads, scanners, mitigations).
NO_STAGE = Level.INFORMATIONAL
#: Findings at these levels move a host at most to ``probed``.
WEAK = Level.LOW
MAX_REASONS = 5


def patched_at_the_time(finding: Finding, builds: Sequence[BuildSeen]) -> str | None:
    """The build a finding's CVEs were all fixed on at the finding's time, else ``None``."""
    if not finding.rule.cves:
        return None
    build = build_at(finding.time, builds)
    return build if open_cves(finding, build) == () else None


def finding_stage(finding: Finding, builds: Sequence[BuildSeen] = ()) -> Stage:
    """The host stage one finding supports on its own.

    Activity aimed at CVEs the host's build had already fixed is an attempt at most.
    """
    if finding.rule.level <= NO_STAGE:
        return Stage.CLEAN
    stage = finding.rule.stage.host_stage
    if finding.rule.level <= WEAK or patched_at_the_time(finding, builds):
        return min(stage, Stage.PROBED)
    return stage


def host_stage(findings: Iterable[Finding], assessed_any: bool,
               builds: Sequence[BuildSeen] = ()) -> tuple[Stage, tuple[str, ...]]:
    """Highest stage the findings support, with the findings that support it.

    A host without findings is ``clean`` only if some evidence could be assessed, otherwise
    ``unknown``. Findings whose rule only matters after exploitation (staging archives) count at
    their own stage once the other findings show exploitation, and at most as ``probed`` before.
    """
    findings = list(findings)
    exploited = any(finding_stage(f, builds) >= Stage.EXPLOITED for f in findings if not f.rule.after_exploitation)
    ranked = _ranked(findings, builds, exploited)
    if not ranked or ranked[0][0] <= Stage.CLEAN:
        return (Stage.CLEAN if assessed_any else Stage.UNKNOWN), ()
    top = ranked[0][0]
    reasons: list[str] = []
    seen: set[str] = set()
    for stage, finding in ranked:
        if stage < top or len(reasons) >= MAX_REASONS:
            break
        if finding.rule.id in seen:
            continue
        seen.add(finding.rule.id)
        where = location(finding.source, finding.line)
        patched = patched_at_the_time(finding, builds)
        note = f" (build {patched} had the fix: an attempt only)" if patched else ""
        note += " (relevant because the host shows exploitation)" if finding.rule.after_exploitation else ""
        reasons.append(f"{finding.rule.id} ({finding.rule.level}, {finding.rule.stage}) "
                       f"at {utc_iso(finding.time) or 'unknown time'} in {where}: {finding.rule.title}{note}")
    return top, tuple(reasons)


def _ranked(findings: list[Finding], builds: Sequence[BuildSeen], exploited: bool) -> list[tuple[Stage, Finding]]:
    def stage_of(finding: Finding) -> Stage:
        if finding.rule.after_exploitation:
            return finding.rule.stage.host_stage if exploited else min(finding_stage(finding, builds), Stage.PROBED)
        return finding_stage(finding, builds)

    return sorted(
        ((stage_of(f), f) for f in findings),
        key=lambda pair: (-pair[0], -pair[1].rule.level, utc_iso(pair[1].time) or "~", pair[1].rule.id),
    )


def assessment(coverage: Mapping[str, SourceCoverage]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Which CVEs the evidence lets exhunt assess, and why the others cannot be."""
    read = {kind for kind, cov in coverage.items() if cov.records > 0}
    assessed: list[str] = []
    not_assessed: list[str] = []
    for cve, (full, partial, needs) in CVE_EVIDENCE.items():
        have_full = [k for k in full if k in read]
        have_partial = [k for k in partial if k in read]
        if have_full:
            assessed.append(f"{cve}: {_span(coverage, have_full)}")
        elif have_partial:
            assessed.append(f"{cve} (partly): {_span(coverage, have_partial)}")
            not_assessed.append(f"{cve} only partly assessed: {needs} not among the evidence")
        else:
            not_assessed.append(f"{cve} not assessed: {needs} not among the evidence")
    return tuple(assessed), tuple(not_assessed)


def _span(coverage: Mapping[str, SourceCoverage], kinds: list[str]) -> str:
    parts = []
    for kind in kinds:
        cov = coverage[kind]
        parts.append(f"{kind} {utc_iso(cov.first) or '?'} .. {utc_iso(cov.last) or '?'}")
    return "; ".join(parts)

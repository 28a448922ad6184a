"""Per-chain exposure at the time of the activity.

A ProxyShell request in August 2021 against a server that already ran the May 2021 SU is
noise; against CU20 without it, it is the attack. For each campaign (ProxyLogon, ProxyShell,
ProxyNotShell) with findings, the build the host ran when the activity began is looked up in
the build table (``exchange_builds.csv``), and findings whose CVEs were all fixed on that build
count as attempts only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from exhunt.analysis.exposure import FAMILIES, FAMILY_LABELS, Build, BuildTable
from exhunt.model import ChainActivity, Finding


@dataclass(frozen=True, slots=True)
class BuildSeen:
    """An Exchange build observed in a host's logs, with the first and last time it was seen."""

    text: str
    first: datetime | None
    last: datetime | None


def chain_of(finding: Finding) -> str | None:
    """The campaign a finding's CVEs belong to (``None`` for findings without CVEs)."""
    for family, cves in FAMILIES.items():
        if any(cve in cves for cve in finding.rule.cves):
            return family
    return None


def build_at(moment: datetime | None, builds: Sequence[BuildSeen]) -> str | None:
    """The build a host ran at ``moment``: the last build first seen at or before it, else the earliest."""
    return _build_at(moment, tuple(builds))


@lru_cache(maxsize=4096)
def _build_at(moment: datetime | None, builds: tuple[BuildSeen, ...]) -> str | None:
    timed = sorted((seen.first, seen.text) for seen in builds if seen.first is not None)
    if not timed:
        untimed = sorted({seen.text for seen in builds}, key=_order)
        return untimed[-1] if untimed else None
    if moment is None:
        return timed[-1][1]
    before = [text for first, text in timed if first <= moment]
    return before[-1] if before else timed[0][1]


def open_cves(finding: Finding, build: str | None) -> tuple[str, ...] | None:
    """The finding's CVEs that ``build`` left open; ``None`` when the build or its CU is unknown."""
    unpatched = _unpatched(build, BuildTable.default())
    if unpatched is None:
        return None
    return tuple(cve for cve in finding.rule.cves if cve in unpatched)


@lru_cache(maxsize=1024)
def _unpatched(build: str | None, table: BuildTable) -> tuple[str, ...] | None:
    parsed = Build.parse(build) if build else None
    return table.unpatched(parsed) if parsed else None


def chains(findings: Iterable[Finding], builds: Sequence[BuildSeen]) -> tuple[ChainActivity, ...]:
    """One entry per campaign with findings, in the order of ``FAMILIES``."""
    grouped: dict[str, list[Finding]] = {}
    for finding in findings:
        family = chain_of(finding)
        if family is not None:
            grouped.setdefault(family, []).append(finding)
    result = []
    for family in FAMILIES:
        members = grouped.get(family)
        if not members:
            continue
        times = [f.time for f in members if f.time is not None]
        first = min(times, default=None)
        build = build_at(first, builds)
        left_open = _family_open(build, family)
        exposed = None if left_open is None else bool(left_open)
        result.append(ChainActivity(family, first, max(times, default=None), len(members), build, exposed,
                                    left_open or (), _summary(family, build, exposed, left_open or ())))
    return tuple(result)


def _summary(family: str, build: str | None, exposed: bool | None, left_open: tuple[str, ...]) -> str:
    label = FAMILY_LABELS[family]
    if exposed is None:
        return f"{label} activity; the build at that time is unknown, so exposure could not be assessed"
    if exposed:
        return f"{label} activity against build {build}, which left {', '.join(left_open)} open"
    return f"{label} activity against build {build}, which had the fixes: attempts only, not exploitation"


def _family_open(build: str | None, family: str) -> tuple[str, ...] | None:
    unpatched = _unpatched(build, BuildTable.default())
    if unpatched is None:
        return None
    return tuple(cve for cve in FAMILIES[family] if cve in unpatched)


def _order(text: str) -> tuple[int, ...]:
    parsed = Build.parse(text)
    return (parsed.major, parsed.minor, parsed.build, parsed.revision) if parsed else (-1,)

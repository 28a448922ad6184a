"""The fleet view: hosts ranked by how far the attack got, activity per hour, and cross-host pivots.

- **Ranking**: by host stage (compromised, exploited, probed, clean, unknown), then by first compromise
  time (earliest first; hosts without one after), then by name. The first compromise of a host whose
  stage is ``exploited`` or ``compromised`` is its earliest finding at ``medium`` or above whose rule
  stage is ``exploit`` or ``post``; hosts below ``exploited`` have none.
- **Activity**: findings at ``medium`` or above per UTC hour, in total and per host; only hours with
  findings are listed, so spikes stand out.
- **Cross-host pivot**: attacker addresses, user agents, web-shell file names and file hashes seen in
  the findings of more than one host (from :func:`~exhunt.analysis.indicators.observed_indicators`;
  shell paths are compared by file name, so ``/aspnet_client/x.aspx`` on one host meets
  ``C:\\inetpub\\wwwroot\\aspnet_client\\x.aspx`` on another). Each pivot lists the hosts in the order they
  first saw it.

A host where an indicator only appears in the raw logs shows it through the pivot pass's findings
(:mod:`exhunt.engine.pivot`), which :func:`~exhunt.analysis.indicators.observed_indicators` counts as sightings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from exhunt.model import FindingStage, HostResult, ScanResult, Stage, utc_iso

from .indicators import Indicator, Sighting, observed_indicators
from .refs import MIN_LEVEL, first_time, last_time, shell_name

#: Indicator kinds compared across hosts, and the kind a pivot reports.
PIVOT_KINDS = {"ip": "ip", "user-agent": "user-agent", "shell-path": "shell-name", "sha256": "sha256"}


@dataclass(frozen=True, slots=True)
class FleetHost:
    """One host's place in the ranking."""

    rank: int
    host: str
    stage: str
    first_compromise: datetime | None
    first_activity: datetime | None
    last_activity: datetime | None
    findings: int

    def to_dict(self) -> dict[str, object]:
        return {"rank": self.rank, "host": self.host, "stage": self.stage,
                "first_compromise": utc_iso(self.first_compromise), "first_activity": utc_iso(self.first_activity),
                "last_activity": utc_iso(self.last_activity), "findings": self.findings}


@dataclass(frozen=True, slots=True)
class HourActivity:
    """Findings at ``medium`` or above in one UTC hour (``hour`` is its start)."""

    hour: datetime
    findings: int
    by_host: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, object]:
        return {"hour": utc_iso(self.hour), "findings": self.findings, "by_host": dict(self.by_host)}


@dataclass(frozen=True, slots=True)
class Pivot:
    """An indicator seen in the findings of several hosts; ``sightings`` in order of first sighting."""

    kind: str
    value: str
    sightings: tuple[Sighting, ...]
    note: str = ""

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(s.host for s in self.sightings)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "value": self.value, "hosts": list(self.hosts), "note": self.note,
                "sightings": [s.to_dict() for s in self.sightings]}


@dataclass(frozen=True, slots=True)
class Fleet:
    """Ranking, hourly activity and pivots of a whole scan."""

    hosts: tuple[FleetHost, ...]
    activity: tuple[HourActivity, ...]
    pivots: tuple[Pivot, ...]

    def to_dict(self) -> dict[str, object]:
        return {"hosts": [h.to_dict() for h in self.hosts], "activity": [a.to_dict() for a in self.activity],
                "pivots": [p.to_dict() for p in self.pivots]}


def fleet(result: ScanResult, indicators: tuple[Indicator, ...] | None = None) -> Fleet:
    """The fleet view of a scan (see the module doc); ``indicators``: the scan's, when already observed."""
    return Fleet(_ranking(result.hosts), _activity(result),
                 pivots(observed_indicators(result) if indicators is None else indicators))


def first_compromise(host: HostResult) -> datetime | None:
    """Earliest exploit/post finding at ``medium`` or above, on a host that is exploited or compromised."""
    if host.stage < Stage.EXPLOITED:
        return None
    return min((f.time for f in host.findings if f.time is not None and f.rule.level >= MIN_LEVEL
                and f.rule.stage in (FindingStage.EXPLOIT, FindingStage.POST)), default=None)


def _ranking(hosts: tuple[HostResult, ...]) -> tuple[FleetHost, ...]:
    def key(entry: tuple[HostResult, datetime | None]) -> tuple[int, bool, str, str]:
        host, first = entry
        return (-int(host.stage), first is None, utc_iso(first) or "", host.host)

    ordered = sorted(((host, first_compromise(host)) for host in hosts), key=key)
    return tuple(FleetHost(rank, host.host, str(host.stage), first, first_time(host.findings),
                           last_time(host.findings), len(host.findings))
                 for rank, (host, first) in enumerate(ordered, 1))


def _activity(result: ScanResult) -> tuple[HourActivity, ...]:
    counts: dict[datetime, dict[str, int]] = {}
    for finding in result.findings:
        if finding.time is None or finding.rule.level < MIN_LEVEL:
            continue
        hour = finding.time.replace(minute=0, second=0, microsecond=0)
        per_host = counts.setdefault(hour, {})
        per_host[finding.host] = per_host.get(finding.host, 0) + 1
    return tuple(HourActivity(hour, sum(per_host.values()), tuple(sorted(per_host.items())))
                 for hour, per_host in sorted(counts.items()))


def pivots(indicators: tuple[Indicator, ...]) -> tuple[Pivot, ...]:
    """Indicators (addresses, agents, shell names, hashes) that more than one host's findings show."""
    grouped: dict[tuple[str, str], list[Indicator]] = {}
    for indicator in indicators:
        kind = PIVOT_KINDS.get(indicator.kind)
        if kind is None:
            continue
        key = shell_name(indicator.value) if kind == "shell-name" else indicator.value
        grouped.setdefault((kind, key), []).append(indicator)
    out = []
    for (kind, key), members in grouped.items():
        by_host: dict[str, list[Sighting]] = {}
        for member in members:
            for sighting in member.sightings:
                by_host.setdefault(sighting.host, []).append(sighting)
        if len(by_host) < 2:
            continue
        merged = sorted((_merge(host, seen) for host, seen in by_host.items()),
                        key=lambda s: (s.first is None, utc_iso(s.first) or "", s.host))
        out.append(Pivot(kind, key if kind == "shell-name" else members[0].value, tuple(merged), members[0].note))
    order = list(dict.fromkeys(PIVOT_KINDS.values()))
    return tuple(sorted(out, key=lambda p: (order.index(p.kind), p.sightings[0].first is None,
                                            utc_iso(p.sightings[0].first) or "", p.value)))


def _merge(host: str, seen: list[Sighting]) -> Sighting:
    firsts = [s.first for s in seen if s.first is not None]
    lasts = [s.last for s in seen if s.last is not None]
    return Sighting(host, min(firsts, default=None), max(lasts, default=None),
                    tuple(sorted({r for s in seen for r in s.rules})), sum(s.findings for s in seen))

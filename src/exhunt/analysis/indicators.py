"""Indicators observed in the findings: addresses, URLs, user agents, file hashes and shell paths.

Only findings at ``medium`` or above count (:data:`~exhunt.analysis.refs.MIN_LEVEL`): below that are
hunting leads, scanners and weak signals whose values are not the attacker's. Per kind:

- ``ip``: the client address of a finding (IIS back-end-site rows on port 444 are skipped: their client
  is Exchange's own front end). Internal addresses (RFC 1918, loopback, link-local, CGNAT, ULA; see
  :data:`~exhunt.analysis.refs.INTERNAL_NETWORKS`) are left out on a host that also shows an external
  one, and kept (``internal`` note) on a host where they are the only source.
- ``url``: IIS ``cs-uri-stem`` + ``?`` + ``cs-uri-query`` and HttpProxy ``UrlStem`` (+ ``UrlQuery``), with the
  per-request ``CorrelationID``/``cafeReqId`` items Exchange appends removed; compared case-insensitively.
- ``user-agent``: HttpProxy ``UserAgent``, IIS ``cs-user-agent``, Rps_Http ``ClientInfo``, compared in the
  normalised form of :func:`~exhunt.analysis.refs.ua_key`; browser-style agents carry a note.
- ``sha256``: the hash of a file-tree finding.
- ``shell-path``: server pages a finding names (file-tree paths, written files, URL stems, export
  targets, the OAB download path); compared case-insensitively.

Each indicator has its first and last sighting, and per host the time span, rules and finding count.
Findings of the second pass (:mod:`exhunt.engine.pivot`, ``informational``) add sightings to the
indicators above whose address, agent or shell name they show, on this host or another; they never
make an indicator of their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from exhunt.engine.pivot import PREFIX as PIVOT_PREFIX
from exhunt.model import Finding, ScanResult, utc_iso

from .refs import (
    MIN_LEVEL,
    client_address,
    ecp_canary,
    generic_agent,
    is_external,
    request_id,
    sha256_of,
    shell_name,
    shell_paths,
    ua_key,
    user_agent,
)

KINDS = ("ip", "url", "user-agent", "sha256", "shell-path")
_EXCHANGE_QUERY_ITEMS = re.compile(r"&?(?:CorrelationID|cafeReqId)=[^;&]*;?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sighting:
    """An indicator on one host: when, by which rules, in how many findings."""

    host: str
    first: datetime | None
    last: datetime | None
    rules: tuple[str, ...]
    findings: int

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "first": utc_iso(self.first), "last": utc_iso(self.last),
                "rules": list(self.rules), "findings": self.findings}


@dataclass(frozen=True, slots=True)
class Indicator:
    """One observed value of one kind (see :data:`KINDS`), with where and when it was seen."""

    kind: str
    value: str
    first: datetime | None
    last: datetime | None
    sightings: tuple[Sighting, ...]
    note: str = ""

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(s.host for s in self.sightings)

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(sorted({rule for s in self.sightings for rule in s.rules}))

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "value": self.value,
            "first": utc_iso(self.first),
            "last": utc_iso(self.last),
            "hosts": list(self.hosts),
            "rules": list(self.rules),
            "findings": sum(s.findings for s in self.sightings),
            "note": self.note,
            "sightings": [s.to_dict() for s in self.sightings],
        }


@dataclass
class _Acc:
    value: str
    hosts: dict[str, list[Finding]] = field(default_factory=dict)
    note: str = ""


def url_of(finding: Finding) -> str | None:
    """The request URL (stem and query) a finding's evidence holds, without Exchange's per-request items."""
    evidence = finding.evidence
    stem = evidence.get("cs-uri-stem") or evidence.get("UrlStem") or ""
    if not stem.startswith("/"):
        return None
    query = evidence.get("cs-uri-query") or evidence.get("UrlQuery") or ""
    query = _EXCHANGE_QUERY_ITEMS.sub("", query.strip()).lstrip("?")
    return stem + (f"?{query}" if query and query != "-" else "")


def observed_indicators(result: ScanResult) -> tuple[Indicator, ...]:
    """Every indicator of every host, by kind (in :data:`KINDS` order), then first sighting and value."""
    found: dict[tuple[str, str], _Acc] = {}

    def add(kind: str, key: str, value: str, finding: Finding, note: str = "") -> None:
        acc = found.setdefault((kind, key), _Acc(value, note=note))
        acc.hosts.setdefault(finding.host, []).append(finding)

    for host in result.hosts:
        strong = [f for f in host.findings if f.rule.level >= MIN_LEVEL]
        addresses = [(f, ip) for f in strong if (ip := client_address(f)) is not None]
        external = [(f, ip) for f, ip in addresses if is_external(ip)]
        for finding, ip in external or addresses:
            add("ip", ip, ip, finding, "" if external else "internal address (the only client addresses on this host)")
        for finding in strong:
            url = url_of(finding)
            if url:
                add("url", url.casefold(), url, finding)
            agent = user_agent(finding)
            if agent:
                add("user-agent", ua_key(agent), agent, finding,
                    "browser-style agent: ordinary clients send it too" if generic_agent(agent) else "")
            digest = sha256_of(finding)
            if digest:
                add("sha256", digest, digest, finding)
            for path in shell_paths(finding):
                add("shell-path", path.replace("/", "\\").casefold(), path, finding)
    shells = {shell_name(acc.value): key for (kind, key), acc in found.items() if kind == "shell-path"}
    for finding in result.findings:
        if finding.rule.id.startswith(PIVOT_PREFIX):
            for kind, key in _pivot_keys(finding, shells):
                if (kind, key) in found:
                    found[(kind, key)].hosts.setdefault(finding.host, []).append(finding)
    indicators = [_indicator(kind, acc) for (kind, _key), acc in found.items()]
    return tuple(sorted(indicators, key=lambda i: (KINDS.index(i.kind), i.first is None, utc_iso(i.first) or "",
                                                   i.value)))


def pivot_values(indicators: Iterable[Indicator], findings: Iterable[Finding]) -> tuple[tuple[str, str], ...]:
    """What the second pass searches for: external addresses, non-browser user agents, shell names, and the
    request ids and ECP session tokens of findings at ``medium`` or above."""
    values: dict[tuple[str, str], None] = {}
    for indicator in indicators:
        if indicator.kind == "ip" and is_external(indicator.value):
            values[("ip", indicator.value)] = None
        elif indicator.kind == "user-agent" and not generic_agent(indicator.value):
            values[("user-agent", indicator.value)] = None
        elif indicator.kind == "shell-path":
            values[("shell-name", shell_name(indicator.value))] = None
    for finding in findings:
        if finding.rule.level < MIN_LEVEL:
            continue
        if ident := request_id(finding):
            values[("request-id", ident)] = None
        if token := ecp_canary(finding):
            values[("ecp-canary", token)] = None
    return tuple(values)


def _pivot_keys(finding: Finding, shells: dict[str, str]) -> list[tuple[str, str]]:
    """The indicator keys a pivot-pass finding shows, whichever link made it match."""
    keys = []
    if ip := client_address(finding):
        keys.append(("ip", ip))
    if agent := user_agent(finding):
        keys.append(("user-agent", ua_key(agent)))
    keys.extend(("shell-path", shells[name]) for path in shell_paths(finding) if (name := shell_name(path)) in shells)
    return keys


def _indicator(kind: str, acc: _Acc) -> Indicator:
    sightings = []
    for host, findings in acc.hosts.items():
        times = [f.time for f in findings if f.time is not None]
        sightings.append(Sighting(host, min(times, default=None), max(times, default=None),
                                  tuple(sorted({f.rule.id for f in findings})), len(findings)))
    sightings.sort(key=lambda s: (s.first is None, utc_iso(s.first) or "", s.host))
    return Indicator(kind, acc.value, _min(s.first for s in sightings), _max(s.last for s in sightings),
                     tuple(sightings), acc.note)


def _min(values: Iterable[datetime | None]) -> datetime | None:
    return min((v for v in values if v is not None), default=None)


def _max(values: Iterable[datetime | None]) -> datetime | None:
    return max((v for v in values if v is not None), default=None)

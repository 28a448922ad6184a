"""Per-host incidents: the same attacker's activity, the chain steps it reached, and what is missing.

Grouping rule (per host; findings only, the logs are not read again):

1. A finding's *keys* are its client address (``c-ip``/``ClientIpAddress``; IIS back-end-site rows on
   port 444 are skipped, their client is Exchange's own front end), its user agent unless it is a
   browser-style ``Mozilla/…`` string (see :func:`~exhunt.analysis.refs.generic_agent`), and the file
   names of the web shells it names (URL stems, written files, export targets, the OAB download path;
   names Exchange ships are ignored).
2. Findings at ``low`` and above are taken in time order. A finding joins every incident that shares a
   key with it and whose last activity is less than ``gap`` (default :data:`GAP`, 7 days) before it;
   if it joins several, they merge; if none, it starts a new incident. Longer silences start a new
   incident even for the same address.
3. Findings without any key (event-log and ECP/OAB rows that carry no client) join the incident on the
   same host nearest in time, within ``gap``; ``informational`` findings (hunting leads, scanners)
   never start an incident and join only through a shared key or, keyless, by time.
4. An incident without an external client address (only a shell name, or only internal addresses,
   which are often Exchange's own servers or a proxy) merges into the nearest incident with an
   external address within ``gap``; those left merge with each other within ``gap``.
5. Findings without a time join an incident through a shared key, else the host's largest incident.

Each incident lists the chain steps reached, in the order of :data:`STEPS`, with the findings that show
each; the step of a finding comes from :data:`STEP_RULES` (first matching pattern). Mailbox exports
place the ``exfiltration`` step through :func:`~exhunt.analysis.mailboxes.mailbox_exposure`: the
findings of a row whose verdict is "confirmed exported" or "confirmed accessed". Gaps are the steps
between the first and the last step reached that have no finding, each with the evidence sources that
would show it (:data:`STEP_SOURCES`), whether the host's collection held them, and the host's
``not_assessed`` lines for the CVEs of that step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from exhunt.model import Finding, FindingStage, HostResult, Level, ScanResult, utc_iso

from .mailboxes import MailboxRow, mailbox_exposure
from .refs import (
    EvidenceRef,
    client_address,
    client_addresses,
    first_time,
    generic_agent,
    in_order,
    is_external,
    last_time,
    shell_name,
    shell_paths,
    ua_key,
    user_agent,
)

#: Activity gaps of this length or more split an attacker's activity into separate incidents.
GAP = timedelta(days=7)

RECON, SSRF, AUTH_BYPASS = "recon", "ssrf", "auth-bypass"
WEBSHELL_WRITTEN, WEBSHELL_USED = "webshell-written", "webshell-used"
CREDENTIAL_DUMP, STAGING, EXFILTRATION = "credential-dump", "staging", "exfiltration"
#: The chain steps, in the order an intrusion reaches them.
STEPS = (RECON, SSRF, AUTH_BYPASS, WEBSHELL_WRITTEN, WEBSHELL_USED, CREDENTIAL_DUMP, STAGING, EXFILTRATION)

#: Rule id -> chain step: the first matching pattern wins (``*`` at the end = prefix). ``None`` = the rule
#: places no step by itself (hunting leads whose meaning depends on other evidence). Rules not listed
#: (user rules) fall back on their stage: probe -> recon, exploit -> ssrf, post -> webshell-used.
STEP_RULES: tuple[tuple[str, str | None], ...] = (
    ("PL-SSRF-1a", RECON),            # SSRF that only reached Autodiscover
    ("PL-SCAN-*", RECON),             # Microsoft's nmap checker
    ("PL-WS-5-USE*", WEBSHELL_USED),  # a non-Exchange page answered 200
    ("PL-WS-5*", RECON),              # web-shell hunting bursts
    ("PL-SSRF-2", AUTH_BYPASS),       # proxyLogon.ecp answered 241
    ("PL-SSRF-*", SSRF),
    ("PS-SSRF-*", SSRF),
    ("PNS-SSRF-*", SSRF),
    ("PS-RPS-1-ATTEMPT", SSRF),       # forged-token session refused: got as far as the SSRF
    ("PS-RPS-1", AUTH_BYPASS),        # forged X-Rps-CAT session accepted
    ("PNS-OWA-2-ATTEMPT", SSRF),
    ("PNS-OWA-2", AUTH_BYPASS),       # remote PowerShell proxied for a foreign client
    ("PNS-OWA-3", AUTH_BYPASS),       # back-end PowerShell answered
    ("PNS-OWA-1", SSRF),              # OWASSRF request answered
    ("PL-26857-1", AUTH_BYPASS),      # deserialization payload reached UM (needs an admin session)
    ("PL-26857-2", WEBSHELL_USED),    # code ran under UMWorkerProcess
    ("PL-27065-1", None),             # any Set-*VirtualDirectory: hunting lead
    ("PL-26858-*", WEBSHELL_WRITTEN),
    ("PL-27065-*", WEBSHELL_WRITTEN),
    ("PS-CMD-1", WEBSHELL_WRITTEN),   # export to a server page / export role granted
    ("PS-CMD-3", WEBSHELL_WRITTEN),   # certificate request written as a page
    ("PS-CMD-2", None),               # export clean-up: exfiltration only via a confirmed mailbox row
    ("PS-CMD-4", None),               # export/search cmdlets: hunting lead
    ("PS-CMD-5*", EXFILTRATION),      # New-MailboxExportRequest to a share in a command line
    ("PS-FILE-*", WEBSHELL_WRITTEN),
    ("PNS-FILE-*", WEBSHELL_WRITTEN),
    ("PL-IIS-DROP", WEBSHELL_WRITTEN),
    ("WEB-DROP-*", WEBSHELL_WRITTEN),
    ("ATTRIB-HIDE-ASPX", WEBSHELL_WRITTEN),
    ("WS-*", WEBSHELL_WRITTEN),
    ("IOC-*", WEBSHELL_WRITTEN),
    ("BASELINE-*", WEBSHELL_WRITTEN),
    ("MSERT-*", WEBSHELL_WRITTEN),
    ("DEFENDER-EXCHANGE", WEBSHELL_WRITTEN),
    ("GEN-PROC-*", WEBSHELL_USED),
    ("REVSHELL-*", WEBSHELL_USED),
    ("POWERCAT", WEBSHELL_USED),
    ("TOOL-NISHANG-*", WEBSHELL_USED),
    ("TOOL-POWERCAT-*", WEBSHELL_USED),
    ("PS-SNAPIN*", WEBSHELL_USED),
    ("ACCT-*", WEBSHELL_USED),
    ("CRED-*", CREDENTIAL_DUMP),
    ("TOOL-LSASS-*", CREDENTIAL_DUMP),
    ("STAGE-*", STAGING),
    ("ARCH-*", STAGING),
    ("MBX-*", EXFILTRATION),          # forwarding and mailbox permissions
)
_FALLBACK = {FindingStage.PROBE: RECON, FindingStage.EXPLOIT: SSRF, FindingStage.POST: WEBSHELL_USED}

_SYSMON = ("evtx:Microsoft-Windows-Sysmon/Operational", "Sysmon event log")
_SECURITY = ("evtx:Security", "Security event log (4688)")
_POWERSHELL = ("evtx:Microsoft-Windows-PowerShell/Operational", "PowerShell event log (4104)")
_MANAGEMENT = ("evtx:MSExchange Management", "MSExchange Management event log")
_FILES = ("file", "file tree of the web and staging folders")
_HTTPPROXY = ("httpproxy", "HttpProxy logs")
_IIS = ("iis", "IIS logs")
#: Step -> (coverage kind, label) of the evidence sources whose findings show it.
STEP_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    RECON: (_HTTPPROXY, _IIS),
    SSRF: (_HTTPPROXY, _IIS),
    AUTH_BYPASS: (_HTTPPROXY, ("rps-http", "Rps_Http logs"), _IIS, ("evtx:Application", "Application event log")),
    WEBSHELL_WRITTEN: (("ecp-server", "ECP server log"), ("oabgenerator", "OABGeneratorLog"), _MANAGEMENT, _SYSMON,
                       _FILES),
    WEBSHELL_USED: (_IIS, _HTTPPROXY, _SYSMON, _SECURITY),
    CREDENTIAL_DUMP: (_SYSMON, _SECURITY, _POWERSHELL, _FILES),
    STAGING: (_SYSMON, _SECURITY, _FILES),
    EXFILTRATION: (_MANAGEMENT, _SYSMON, _SECURITY, _POWERSHELL, ("ecp-server", "ECP server log")),
}
#: Step -> CVEs whose ``not_assessed`` lines explain a gap at that step.
STEP_CVES: dict[str, tuple[str, ...]] = {
    SSRF: ("CVE-2021-26855", "CVE-2021-34473", "CVE-2022-41040"),
    AUTH_BYPASS: ("CVE-2021-26855", "CVE-2021-34523", "CVE-2022-41082", "CVE-2021-26857"),
    WEBSHELL_WRITTEN: ("CVE-2021-27065", "CVE-2021-26858", "CVE-2021-31207"),
    EXFILTRATION: ("CVE-2021-31207",),
}


def listed_step(rule_id: str) -> tuple[bool, str | None]:
    """(listed, step): whether :data:`STEP_RULES` lists the rule, and the step it gives."""
    for pattern, step in STEP_RULES:
        if (pattern.endswith("*") and rule_id.startswith(pattern[:-1])) or rule_id == pattern:
            return True, step
    return False, None


@dataclass(frozen=True, slots=True)
class StepEvidence:
    """A chain step an incident reached, when, and the findings that show it."""

    step: str
    first: datetime | None
    last: datetime | None
    evidence: tuple[EvidenceRef, ...]

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "first": utc_iso(self.first), "last": utc_iso(self.last),
                "evidence": [ref.to_dict() for ref in self.evidence]}


@dataclass(frozen=True, slots=True)
class Gap:
    """A step between the first and the last step reached without a finding, and why it may be missing."""

    step: str
    explanation: str
    read: tuple[str, ...] = ()
    not_collected: tuple[str, ...] = ()
    not_assessed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "explanation": self.explanation, "read": list(self.read),
                "not_collected": list(self.not_collected), "not_assessed": list(self.not_assessed)}


@dataclass(frozen=True, slots=True)
class Incident:
    """One attacker's activity on one host (see the module doc for the grouping rule)."""

    id: str
    host: str
    first: datetime | None
    last: datetime | None
    attacker_ips: tuple[str, ...]
    user_agents: tuple[str, ...]
    shells: tuple[str, ...]
    steps: tuple[StepEvidence, ...]
    gaps: tuple[Gap, ...]
    findings: int

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(step.step for step in self.steps)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "host": self.host,
            "first": utc_iso(self.first),
            "last": utc_iso(self.last),
            "attacker_ips": list(self.attacker_ips),
            "user_agents": list(self.user_agents),
            "shells": list(self.shells),
            "steps": [step.to_dict() for step in self.steps],
            "gaps": [gap.to_dict() for gap in self.gaps],
            "findings": self.findings,
        }


@dataclass
class _Group:
    findings: list[Finding] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None

    def add(self, finding: Finding, keys: Iterable[str] = ()) -> None:
        self.findings.append(finding)
        self.keys.update(keys)
        if finding.time is not None:
            self.first = finding.time if self.first is None else min(self.first, finding.time)
            self.last = finding.time if self.last is None else max(self.last, finding.time)

    def absorb(self, other: _Group) -> None:
        for finding in other.findings:
            self.add(finding)
        self.keys |= other.keys

    @property
    def has_ip(self) -> bool:
        """True when some finding came from an external address (internal ones are often Exchange's own)."""
        return any(key.startswith("ip:") and is_external(key[3:]) for key in self.keys)

    def distance(self, moment: datetime) -> timedelta | None:
        if self.first is None or self.last is None:
            return None
        if self.first <= moment <= self.last:
            return timedelta(0)
        return min(abs(moment - self.first), abs(moment - self.last))


def keys_of(finding: Finding) -> set[str]:
    """The attacker keys of a finding: ``ip:``, ``ua:`` (non-generic agents) and ``shell:`` names."""
    keys: set[str] = set()
    address = client_address(finding)
    if address:
        keys.add(f"ip:{address}")
    agent = user_agent(finding)
    if agent and not generic_agent(agent):
        keys.add(f"ua:{ua_key(agent)}")
    keys.update(f"shell:{shell_name(path)}" for path in shell_paths(finding))
    return keys


def incidents(result: ScanResult, gap: timedelta = GAP,
              mailboxes: Sequence[MailboxRow] | None = None) -> tuple[Incident, ...]:
    """Every host's incidents, hosts in scan order, each host's incidents by first activity (``mailboxes``:
    the scan's mailbox table when already built)."""
    confirming: dict[str, set[EvidenceRef]] = {}
    for row in mailbox_exposure(result) if mailboxes is None else mailboxes:
        if row.confirmed:
            confirming.setdefault(row.host, set()).update(row.evidence)
    out: list[Incident] = []
    for host in result.hosts:
        groups = _group(list(host.findings), gap)
        for number, group in enumerate(groups, 1):
            out.append(_incident(host, f"{host.host}#{number}", group, confirming.get(host.host, set())))
    return tuple(out)


def _group(findings: list[Finding], gap: timedelta) -> list[_Group]:
    anchors = [f for f in in_order(findings) if f.rule.level > Level.INFORMATIONAL]
    followers = [f for f in in_order(findings) if f.rule.level <= Level.INFORMATIONAL]
    groups: list[_Group] = []
    keyless: list[Finding] = []
    untimed: list[tuple[Finding, set[str]]] = []
    for finding in anchors:
        keys = keys_of(finding)
        if not keys:
            keyless.append(finding)
        elif finding.time is None:
            untimed.append((finding, keys))
        else:
            _join(groups, finding, keys, gap, create=True)
    for finding in followers:
        keys = keys_of(finding)
        if keys and finding.time is not None:
            _join(groups, finding, keys, gap, create=False)
        elif not keys:
            keyless.append(finding)
    loose: list[Finding] = []
    for finding in keyless:
        if finding.time is None:
            untimed.append((finding, set()))
            continue
        near = _nearest(groups, finding.time, gap)
        if near is not None:
            near.add(finding)
        elif finding.rule.level > Level.INFORMATIONAL:
            loose.append(finding)
    for finding in loose:  # keyless anchors far from every keyed incident: an unattributed incident
        _join(groups, finding, {"unattributed"}, gap, create=True)
    groups = _merge_addressless(groups, gap)
    for finding, keys in untimed:
        match = next((g for g in groups if g.keys & keys), None)
        if match is None and groups:
            match = max(groups, key=lambda g: len(g.findings))
        if match is None:
            if finding.rule.level <= Level.INFORMATIONAL:
                continue
            match = _Group()
            groups.append(match)
        match.add(finding, keys)
    return sorted(groups, key=lambda g: (g.first is None, utc_iso(g.first) or ""))


def _join(groups: list[_Group], finding: Finding, keys: set[str], gap: timedelta, create: bool) -> None:
    assert finding.time is not None
    moment = finding.time
    hits = [g for g in groups if g.keys & keys and (g.last is None or moment - g.last < gap)]
    if not hits:
        if create:
            group = _Group()
            group.add(finding, keys)
            groups.append(group)
        return
    target = hits[0]
    for other in hits[1:]:
        target.absorb(other)
        groups.remove(other)
    target.add(finding, keys)


def _nearest(groups: Sequence[_Group], moment: datetime, gap: timedelta) -> _Group | None:
    best: tuple[timedelta, int, _Group] | None = None
    for index, group in enumerate(groups):
        distance = group.distance(moment)
        if distance is None or distance >= gap:
            continue
        if best is None or (distance, index) < best[:2]:
            best = (distance, index, group)
    return best[2] if best else None


def _merge_addressless(groups: list[_Group], gap: timedelta) -> list[_Group]:
    addressed = [g for g in groups if g.has_ip]
    rest: list[_Group] = []
    for group in (g for g in groups if not g.has_ip):
        target = _closest(addressed, group, gap) or _closest(rest, group, gap)
        if target is None:
            rest.append(group)
        else:
            target.absorb(group)
    return addressed + rest


def _closest(candidates: Sequence[_Group], group: _Group, gap: timedelta) -> _Group | None:
    best: tuple[timedelta, _Group] | None = None
    for candidate in candidates:
        distance = _span_distance(candidate, group)
        if distance is not None and distance < gap and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def _span_distance(a: _Group, b: _Group) -> timedelta | None:
    if a.first is None or a.last is None or b.first is None or b.last is None:
        return None
    if a.last < b.first:
        return b.first - a.last
    if b.last < a.first:
        return a.first - b.last
    return timedelta(0)


def _incident(host: HostResult, ident: str, group: _Group, confirming: set[EvidenceRef]) -> Incident:
    findings = in_order(group.findings)
    by_step: dict[str, list[Finding]] = {}
    for finding in findings:
        listed, step = listed_step(finding.rule.id)
        if EvidenceRef.of(finding) in confirming:
            by_step.setdefault(EXFILTRATION, []).append(finding)
            if step == EXFILTRATION or not listed:
                continue  # an unlisted (user) rule that shows a confirmed export is that export
        elif not listed:
            step = _FALLBACK[finding.rule.stage]
        if step is not None:
            by_step.setdefault(step, []).append(finding)
    steps = tuple(StepEvidence(step, first_time(by_step[step]), last_time(by_step[step]),
                               tuple(dict.fromkeys(EvidenceRef.of(f) for f in by_step[step])))
                  for step in STEPS if step in by_step)
    reached = [STEPS.index(step.step) for step in steps]
    gaps = tuple(_gap(host, STEPS[index]) for index in range(min(reached, default=0), max(reached, default=-1) + 1)
                 if STEPS[index] not in by_step)
    ips = _addresses(findings)
    agents: dict[str, str] = {}
    for finding in findings:
        agent = user_agent(finding)
        if agent is not None:
            agents.setdefault(ua_key(agent), agent)
    shells = tuple(dict.fromkeys(shell_name(p) for f in findings for p in shell_paths(f)))
    return Incident(ident, host.host, group.first, group.last, ips, tuple(agents.values()), shells, steps, gaps,
                    len(findings))


def _addresses(findings: Sequence[Finding]) -> tuple[str, ...]:
    seen = client_addresses(findings)
    return tuple(ip for ip in seen if is_external(ip)) or seen


def _gap(host: HostResult, step: str) -> Gap:
    read_kinds = {c.kind: c for c in host.coverage if c.records > 0}
    read, missing = [], []
    for kind, label in STEP_SOURCES[step]:
        cov = read_kinds.get(kind)
        if cov is None:
            missing.append(label)
        else:
            read.append(f"{label} ({utc_iso(cov.first) or '?'} .. {utc_iso(cov.last) or '?'})")
    cves = STEP_CVES.get(step, ())
    unassessed = tuple(line for line in host.not_assessed if line.split(" ", 1)[0] in cves)
    if not read:
        explanation = f"{step}: no {_join_words(missing)} collected"
    else:
        explanation = (f"{step}: no finding in the {_join_words([r.split(' (')[0] for r in read])} that were read"
                       + (f"; not collected: {_join_words(missing, 'and')}" if missing else ""))
    return Gap(step, explanation, tuple(read), tuple(missing), unassessed)


def _join_words(words: Sequence[str], conjunction: str = "or") -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" {conjunction} " + words[-1]



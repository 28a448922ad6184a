"""What the scoping analyses read out of a finding: where it is, who sent it, which shell it names.

Shared by :mod:`timeline`, :mod:`incidents`, :mod:`mailboxes`, :mod:`indicators` and :mod:`fleet`. All
of them work from a :class:`~exhunt.model.ScanResult` alone (the findings and each host's coverage); none
reads the evidence again. Everything taken from ``Finding.evidence`` is attacker-controlled text and is
only compared and copied, never interpreted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from exhunt.files.iocs import shipped
from exhunt.model import Finding, Level, location, utc_iso

#: Findings at this level or above are attacker activity for indicators, pivots and activity counts.
MIN_LEVEL = Level.MEDIUM
#: Port of IIS's "Exchange Back End" site: its client is Exchange's own front end proxying a request.
BACK_END_PORT = "444"
#: Networks that are not an attacker's own address on the Internet. The IANA documentation ranges
#: (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are *not* listed: Python's ``is_private`` counts them
#: as private, but examples, tests and sanitised reports use them for public addresses.
INTERNAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "::/128", "::1/128", "fc00::/7", "fe80::/10",
))
#: Extensions of server pages a web shell can be.
SCRIPT_EXTENSIONS = ("aspx", "ashx", "asmx", "asax", "ascx", "asp", "php", "jsp", "jspx", "cfm", "shtml")
_SCRIPT_PATH = re.compile(r"[^\s'\"<>|;,=?&()]+\.(?:" + "|".join(SCRIPT_EXTENSIONS) + r")(?![\w.])", re.IGNORECASE)
#: Evidence fields that may name a web shell's path (URL stems, written files, export targets, messages).
_WHOLE_FIELDS = ("cs-uri-stem", "UrlStem", "TargetFilename", "Path")
_TEXT_FIELDS = ("Message", "CmdletParameters", "CommandLine", "EventData", "ScriptBlockText")
_SCRIPT_END = re.compile(r"\.(?:" + "|".join(SCRIPT_EXTENSIONS) + r")$", re.IGNORECASE)
_UA_FIELDS = ("UserAgent", "cs-user-agent", "ClientInfo")
_IP_FIELDS = ("c-ip", "ClientIpAddress")
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_CAFE_REQ = re.compile(rf"cafeReqId=({_GUID})")
_CANARY = re.compile(r"msExchEcpCanary=([A-Za-z0-9_.\-]{8,})")


@dataclass(frozen=True, slots=True, order=True)
class EvidenceRef:
    """Where a finding is: host, source file, line (record number for event logs) and rule."""

    host: str
    source: str
    line: int | None
    rule: str
    time: datetime | None = None

    @classmethod
    def of(cls, finding: Finding) -> EvidenceRef:
        return cls(finding.host, finding.source, finding.line, finding.rule.id, finding.time)

    def label(self) -> str:
        """``host source:line rule`` on one line (``source`` alone when there is no line)."""
        where = location(self.source, self.line)
        return f"{self.host} {where} {self.rule}"

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "source": self.source, "line": self.line, "rule": self.rule,
                "time": utc_iso(self.time)}


@lru_cache(maxsize=1 << 16)
def parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The first address in ``text`` (proxy hop lists, ``[v6]``, IPv4-mapped IPv6), or ``None`` (cached: the
    same few addresses recur on thousands of findings)."""
    if not text:
        return None
    for token in text.replace("->", " ").replace(",", " ").split():
        token = token.strip("[]")
        try:
            address = ipaddress.ip_address(token)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address
    return None


def is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for private (RFC 1918, ULA), loopback, link-local, CGNAT and unspecified addresses."""
    return any(address in network for network in INTERNAL_NETWORKS if network.version == address.version)


def client_address(finding: Finding) -> str | None:
    """The client address of a finding, or ``None``.

    Uses ``client_ip`` and, for correlation findings that carry the group instead, the ``c-ip`` /
    ``ClientIpAddress`` evidence. Rows of IIS's back-end site (port 444) are skipped: their client
    is Exchange's own front end, not the attacker.
    """
    if str(finding.evidence.get("s-port", "")) == BACK_END_PORT:
        return None
    candidates = [finding.client_ip, *(finding.evidence.get(name) for name in _IP_FIELDS)]
    for candidate in candidates:
        address = parse_ip(str(candidate)) if candidate else None
        if address is not None:
            return str(address)
    return None


def is_external(ip: str) -> bool:
    """True for a parseable address outside :data:`INTERNAL_NETWORKS`."""
    address = parse_ip(ip)
    return address is not None and not is_internal(address)


def client_addresses(findings: Iterable[Finding]) -> tuple[str, ...]:
    """The distinct client addresses of ``findings`` (:func:`client_address`), in order of appearance."""
    return tuple(dict.fromkeys(ip for f in findings if (ip := client_address(f)) is not None))


def first_time(findings: Iterable[Finding]) -> datetime | None:
    """The earliest time of ``findings`` (``None`` if none has one)."""
    return min((f.time for f in findings if f.time is not None), default=None)


def last_time(findings: Iterable[Finding]) -> datetime | None:
    """The latest time of ``findings`` (``None`` if none has one)."""
    return max((f.time for f in findings if f.time is not None), default=None)

def user_agent(finding: Finding) -> str | None:
    """The client's user agent as logged (HttpProxy ``UserAgent``, IIS ``cs-user-agent``, Rps_Http ``ClientInfo``)."""
    for name in _UA_FIELDS:
        value = finding.evidence.get(name)
        if value and value.strip() not in ("", "-"):
            return value.strip()
    return None


def ua_key(agent: str) -> str:
    """A user agent in a form that compares equal across sources.

    HttpProxy writes a comma in a user agent as a space and IIS writes spaces as ``+`` (which the
    IIS reader decodes, turning a literal ``+`` into a space): commas and ``+`` are dropped to spaces,
    runs of spaces collapsed and case folded.
    """
    return " ".join(agent.replace(",", " ").replace("+", " ").split()).casefold()


def generic_agent(agent: str) -> bool:
    """True for browser-style agents (``Mozilla/…``) that ordinary clients send too: they never link findings alone."""
    return agent.lstrip().lower().startswith("mozilla/")


def request_id(finding: Finding) -> str | None:
    """The front end's id of the request, lower case: HttpProxy ``RequestId``, or the ``cafeReqId`` Exchange
    appends to the IIS query of a proxied request (the same value, mailbox_access.md §1.2)."""
    value = (finding.evidence.get("RequestId") or "").strip()
    if re.fullmatch(_GUID, value):
        return value.lower()
    found = _CAFE_REQ.search(finding.evidence.get("cs-uri-query") or "")
    return found.group(1).lower() if found else None


def ecp_canary(finding: Finding) -> str | None:
    """The ECP session token (``msExchEcpCanary``) in a finding's request query, if any."""
    for name in ("cs-uri-query", "UrlQuery", "cs-uri"):
        found = _CANARY.search(finding.evidence.get(name) or "")
        if found:
            return found.group(1)
    return None


def shell_paths(finding: Finding) -> tuple[str, ...]:
    """Server-page paths a finding names (URL stems, written files, export targets, the file itself).

    Names Exchange ships (``logon.aspx``, ``errorPage.aspx``, … from the IOC table's ``shipped_names``)
    are left out: they are not evidence of a web shell by name.
    """
    found: list[str] = []
    if finding.source_kind == "file" and _SCRIPT_END.search(finding.source):
        found.append(finding.source)
    for name in _WHOLE_FIELDS:
        value = (finding.evidence.get(name) or "").strip()
        if _SCRIPT_END.search(value):
            found.append(value)
    for name in _TEXT_FIELDS:
        value = finding.evidence.get(name)
        if value:
            found.extend(match.group(0) for match in _SCRIPT_PATH.finditer(value))
    names = shipped().shipped
    return tuple(dict.fromkeys(path for path in found if shell_name(path) not in names))


def shell_name(path: str) -> str:
    """The file name of a Windows path, UNC path or URL stem, case-folded (``discover.aspx``)."""
    return re.split(r"[\\/]", path.strip())[-1].casefold()


def sha256_of(finding: Finding) -> str | None:
    """The SHA-256 a file-tree finding carries, lower case."""
    value = finding.evidence.get("sha256")
    return value.lower() if value and re.fullmatch(r"[0-9a-fA-F]{64}", value) else None


def in_order(findings: list[Finding]) -> list[Finding]:
    """Findings by time (those without a time last), then source, line and rule."""
    return sorted(findings, key=lambda f: (f.time is None, utc_iso(f.time) or "", f.host, f.source, f.line or 0,
                                           f.rule.id))

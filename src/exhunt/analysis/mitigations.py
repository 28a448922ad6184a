"""Mitigations found in IIS configuration: applied, but not fixes.

Microsoft's URL Rewrite mitigations block known request shapes without patching the code, so
a host can be "mitigated but not patched". Rule names, from the scripts that create them:
EOMT and BackendCookieMitigation (CVE-2021-26855, March 2021; detections.md PL-COOKIE-1),
EOMTv2 and the Exchange Emergency Mitigation Service's M1 rule (CVE-2022-41040, Sept. 2022;
detections.md PNS-SSRF-2, exchange_builds.md §1).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from exhunt.model import Mitigation, Record

PROXYLOGON_SSRF = ("CVE-2021-26855",)
PROXYNOTSHELL = ("CVE-2022-41040", "CVE-2022-41082")

#: URL Rewrite rule name (case-insensitive) -> (what applied it, CVEs whose known exploits it blocks).
KNOWN: dict[str, tuple[str, tuple[str, ...]]] = {
    "x-anonresource-backend abort - inbound": ("EOMT / BackendCookieMitigation", PROXYLOGON_SSRF),
    "x-beresource abort - inbound": ("EOMT / BackendCookieMitigation", PROXYLOGON_SSRF),
    "powershell - inbound": ("EOMTv2 URL Rewrite rule", PROXYNOTSHELL),
    "eems m1.1 powershell - inbound": ("Exchange Emergency Mitigation Service M1", PROXYNOTSHELL),
}


def find(records: Iterable[tuple[Record, str, float | None]]) -> tuple[Mitigation, ...]:
    """Mitigations among IIS configuration records given as (record, file path, file mtime)."""
    found = []
    for record, source, mtime in records:
        if record.fields.get("Element") != "rule":
            continue
        name = record.fields.get("name", "")
        known = KNOWN.get(name.strip().lower())
        if known is None:
            continue
        label, covers = known
        seen = datetime.fromtimestamp(mtime, tz=UTC) if mtime is not None else None
        found.append(Mitigation(name, label, covers, source, record.line, seen))
    return tuple(sorted(set(found), key=lambda m: (m.source, m.line)))


def notes(mitigations: Iterable[Mitigation], unpatched: Iterable[str]) -> tuple[str, ...]:
    """One note per mitigation that covers CVEs the build leaves open."""
    open_cves = set(unpatched)
    out = []
    for mitigation in mitigations:
        covered = [cve for cve in mitigation.covers if cve in open_cves]
        if covered:
            out.append(f"{', '.join(covered)} unpatched but mitigated by {mitigation.label} "
                       f"(rule '{mitigation.name}' in {mitigation.source}): a mitigation, not a fix")
    return tuple(out)

"""``indicators.stix.json``: a STIX 2.1 bundle of the attacker addresses a scan saw, for CTI sharing.

Objects, all built and validated by the ``stix2`` library (no custom properties):

- one ``identity`` for exhunt (the producer) and one per host (``where_sighted_refs``);
- ``ipv4-addr``/``ipv6-addr`` for each client address in a finding at level ``medium`` or above
  (loopback, unspecified and multicast addresses are left out, and so are requests to the back-end
  site on port 444, whose client is Exchange's own front end), and ``url`` for the requests of
  those findings whose evidence has a URL stem (``https://<host><stem>?<query>``; ``http`` on port 80);
- per host and address, an ``observed-data`` (first/last observed = the findings' times,
  ``number_observed`` = distinct log lines) referring to the address and its URLs;
- one ``indicator`` per address (``[ipv4-addr:value = '…']``, ``valid_from`` = first seen anywhere)
  and, per host where it was seen, a ``sighting`` of it with ``first_seen``/``last_seen``/``count``.

Identifiers are UUIDv5 over the objects' content, and ``created``/``modified`` are the time of the
latest finding, so the same evidence always gives the same bundle. Findings without a time cannot be
sighted and are left out.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import stix2

from exhunt import __version__
from exhunt.model import Finding, Level

FILE_NAME = "indicators.stix.json"
MIN_LEVEL = Level.MEDIUM
BACK_END_PORT = "444"
#: Namespace of exhunt's deterministic STIX identifiers.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/exhunt/exhunt#stix")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Characters kept as they are in a URL path or query; everything else is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def pattern_string(value: str) -> str:
    """``value`` as a STIX pattern string literal: ``'`` becomes ``\\'`` and ``\\`` becomes ``\\\\``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stix_id(kind: str, *content: object) -> str:
    """A deterministic ``<kind>--<uuid5>`` identifier from the object's defining content."""
    return f"{kind}--{uuid.uuid5(NAMESPACE, json.dumps([kind, *content], default=str))}"


def attacker_ip(finding: Finding) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The finding's client address when it is one worth sharing (level ``medium`` or above)."""
    if finding.rule.level < MIN_LEVEL or not finding.client_ip or finding.time is None:
        return None
    if str(finding.evidence.get("s-port", "")) == BACK_END_PORT:
        return None  # the back-end site's client is Exchange's own front end proxying the request
    try:
        address = ipaddress.ip_address(finding.client_ip.strip().strip("[]"))
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        return None
    return address


def request_url(finding: Finding) -> str | None:
    """The request URL of a finding whose evidence has a stem, on the host that served it."""
    evidence = finding.evidence
    stem = next((evidence[n] for n in ("cs-uri-stem", "UrlStem") if evidence.get(n) not in (None, "", "-")), None)
    if not isinstance(stem, str) or not stem.startswith("/"):
        return None
    query = evidence.get("cs-uri-query")
    port = str(evidence.get("s-port") or "")
    scheme = "http" if port == "80" else "https"
    authority = quote(finding.host.lower(), safe="-._~") + (f":{port}" if port.isdigit() and port not in
                                                           ("80", "443") else "")
    url = f"{scheme}://{authority}{quote(stem, safe=_PATH_SAFE)}"
    if isinstance(query, str) and query not in ("", "-"):
        url += "?" + quote(query, safe=_QUERY_SAFE)
    return url


@dataclass
class _Seen:
    """One address on one host: when, how often, which rules and which URLs."""

    first: datetime
    last: datetime
    events: set[tuple[str, int | None]] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    urls: set[str] = field(default_factory=set)


def _collect(findings: Iterable[Finding]) -> dict[str, dict[str, _Seen]]:
    seen: dict[str, dict[str, _Seen]] = {}
    for finding in findings:
        address = attacker_ip(finding)
        if address is None or finding.time is None:
            continue
        moment = finding.time.astimezone(UTC)
        entry = seen.setdefault(str(address), {}).setdefault(finding.host, _Seen(moment, moment))
        entry.first, entry.last = min(entry.first, moment), max(entry.last, moment)
        entry.events.add((finding.source, finding.line))
        entry.rules.add(finding.rule.id)
        url = request_url(finding)
        if url:
            entry.urls.add(url)
    return seen


def build_bundle(findings: Sequence[Finding], hosts: Iterable[str] = ()) -> stix2.v21.Bundle:
    """The STIX 2.1 bundle for ``findings`` (``hosts`` adds identities for hosts without sightings)."""
    seen = _collect(findings)
    times = [f.time.astimezone(UTC) for f in findings if f.time is not None]
    stamp = max(times, default=_EPOCH)
    common = {"created": stamp, "modified": stamp}
    tool = stix2.v21.Identity(id=stix_id("identity", "exhunt"), name="exhunt", identity_class="system",
                              description=f"exhunt {__version__}: Exchange ProxyLogon-era evidence scanner",
                              **common)
    objects: list[Any] = [tool]
    host_names = sorted({*hosts, *(h for per_host in seen.values() for h in per_host)})
    host_ids: dict[str, str] = {}
    for name in host_names:
        identity = stix2.v21.Identity(id=stix_id("identity", "host", name), name=name, identity_class="system",
                                      description=f"Exchange server {name}", created_by_ref=tool.id, **common)
        host_ids[name] = identity.id
        objects.append(identity)
    for value in sorted(seen, key=lambda v: (ipaddress.ip_address(v).version, ipaddress.ip_address(v))):
        per_host = seen[value]
        v6 = ipaddress.ip_address(value).version == 6
        sco = stix2.v21.IPv6Address(value=value) if v6 else stix2.v21.IPv4Address(value=value)
        objects.append(sco)
        first = min(entry.first for entry in per_host.values())
        rules = sorted({rule for entry in per_host.values() for rule in entry.rules})
        pattern = f"[{sco.type}:value = {pattern_string(value)}]"
        indicator = stix2.v21.Indicator(
            id=stix_id("indicator", pattern), name=f"Exchange exploitation source {value}",
            description="Client address of exhunt findings: " + ", ".join(rules),
            indicator_types=["malicious-activity"], pattern=pattern, pattern_type="stix", valid_from=first,
            created_by_ref=tool.id, **common)
        objects.append(indicator)
        for host in sorted(per_host):
            entry = per_host[host]
            urls = [stix2.v21.URL(value=url) for url in sorted(entry.urls)]
            objects.extend(urls)
            count = max(1, min(len(entry.events), 999_999_999))
            observed = stix2.v21.ObservedData(
                id=stix_id("observed-data", host, value, entry.first, entry.last, count, sorted(entry.urls)),
                first_observed=entry.first, last_observed=entry.last, number_observed=count,
                object_refs=[sco.id, *(u.id for u in urls)], created_by_ref=tool.id, **common)
            objects.append(observed)
            objects.append(stix2.v21.Sighting(
                id=stix_id("sighting", indicator.id, host, entry.first, entry.last, count),
                sighting_of_ref=indicator.id, where_sighted_refs=[host_ids[host]], observed_data_refs=[observed.id],
                first_seen=entry.first, last_seen=entry.last, count=count,
                description=f"{value} on {host}: " + ", ".join(sorted(entry.rules)),
                created_by_ref=tool.id, **common))
    unique = list({obj.id: obj for obj in objects}.values())
    return stix2.v21.Bundle(objects=unique, id=stix_id("bundle", [o.id for o in unique]),
                            allow_custom=False)


def write_stix_file(findings: Sequence[Finding], folder: Path, hosts: Iterable[str] = ()) -> Path:
    """Write ``indicators.stix.json`` into ``folder``."""
    path = folder / FILE_NAME
    bundle = build_bundle(findings, hosts)
    path.write_text(bundle.serialize(pretty=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

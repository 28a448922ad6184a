"""``findings.ecs.ndjson``: one Elastic Common Schema alert document per finding.

Rule metadata goes to ``rule.*``, ``threat.*`` (MITRE ATT&CK) and ``vulnerability.id``; request
fields are mapped the way Elastic's IIS integration maps W3C fields (``cs-uri-stem`` -> ``url.path``,
``cs-uri-query`` -> ``url.query`` (URL-decoded), ``cs-method`` -> ``http.request.method``,
``sc-status`` -> ``http.response.status_code`` as an integer, ``cs-user-agent`` ->
``user_agent.original``, ``c-ip`` -> ``source.ip``, …), and the HttpProxy/Rps_Http equivalents
(``Method``, ``UrlStem``, ``HttpStatus``, ``UserAgent``, ``ClientIpAddress``) the same way. Every
evidence field is also kept verbatim under ``exhunt.evidence.*`` (Exchange-only names such as
``AnchorMailbox`` or ``BackEndCookie`` live only there). Values typed ``ip`` or ``long`` in ECS are
only set when they parse, so one odd log value cannot make Elasticsearch reject a document.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from exhunt.model import Finding, Level, utc_iso
from exhunt.outputs.common import json_line
from exhunt.text import message

FILE_NAME = "findings.ecs.ndjson"
ECS_VERSION = "8.11.0"
#: ``event.risk_score`` per level: Elastic's default risk scores for rule severities.
RISK_SCORE = {Level.INFORMATIONAL: 0.0, Level.LOW: 21.0, Level.MEDIUM: 47.0, Level.HIGH: 73.0,
              Level.CRITICAL: 99.0}
WEB_KINDS = frozenset({"iis", "httpproxy", "ecp-server", "ecp-activity", "rps-http"})

# (evidence field, ECS field, converter) for request-shaped evidence (W3C and Exchange CSV names).
_TEXT, _INT, _IP, _DECODED = "text", "int", "ip", "decoded"
REQUEST_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("cs-method", "http.request.method", _TEXT),
    ("Method", "http.request.method", _TEXT),
    ("cs-uri-stem", "url.path", _TEXT),
    ("UrlStem", "url.path", _TEXT),
    ("cs-uri-query", "url.query", _DECODED),
    ("sc-status", "http.response.status_code", _INT),
    ("HttpStatus", "http.response.status_code", _INT),
    ("cs-user-agent", "user_agent.original", _TEXT),
    ("cs(User-Agent)", "user_agent.original", _TEXT),
    ("UserAgent", "user_agent.original", _TEXT),
    ("cs(Referer)", "http.request.referrer", _TEXT),
    ("cs-referer", "http.request.referrer", _TEXT),
    ("c-ip", "source.ip", _IP),
    ("ClientIpAddress", "source.ip", _IP),
    ("s-ip", "destination.ip", _IP),
    ("s-port", "destination.port", _INT),
    ("cs-host", "destination.domain", _TEXT),
    ("cs-username", "user.name", _TEXT),
    ("sc-substatus", "iis.access.sub_status", _INT),
    ("sc-win32-status", "iis.access.win32_status", _INT),
    ("s-sitename", "iis.access.site_name", _TEXT),
)
# Event-log fields (Sysmon / Security 4688 names) with an obvious ECS home.
EVENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("Image", "process.executable"),
    ("CommandLine", "process.command_line"),
    ("ParentImage", "process.parent.executable"),
    ("ParentCommandLine", "process.parent.command_line"),
    ("TargetFilename", "file.path"),
    ("User", "user.name"),
    ("Channel", "winlog.channel"),
    ("Provider_Name", "winlog.provider_name"),
)
_EMPTY = ("", "-")


def _put(document: dict[str, object], dotted: str, value: object) -> None:
    """Set ``a.b.c`` in nested objects, keeping a value already set (first mapping wins)."""
    *parents, leaf = dotted.split(".")
    node = document
    for name in parents:
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            return
        node = child
    node.setdefault(leaf, value)


def valid_ip(text: object) -> str | None:
    """The canonical form of an IPv4/IPv6 address, or ``None`` when ``text`` is not one."""
    if not isinstance(text, str):
        return None
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def _convert(value: str, kind: str) -> object | None:
    if kind == _INT:
        return int(value) if value.isascii() and value.isdigit() and len(value) < 18 else None
    if kind == _IP:
        return valid_ip(value)
    if kind == _DECODED:
        return unquote(value)
    return value


def _techniques(attack: Iterable[str]) -> dict[str, object] | None:
    """``threat.technique`` (and ``.subtechnique``) from ATT&CK ids such as ``T1505.003``."""
    techniques: list[str] = []
    subtechniques: list[str] = []
    for tag in attack:
        tag = tag.strip().upper()
        if not tag.startswith("T"):
            continue
        parent = tag.split(".", 1)[0]
        if parent not in techniques:
            techniques.append(parent)
        if "." in tag and tag not in subtechniques:
            subtechniques.append(tag)
    if not techniques:
        return None
    technique: dict[str, object] = {
        "id": techniques,
        "reference": [f"https://attack.mitre.org/techniques/{t}/" for t in techniques],
    }
    if subtechniques:
        technique["subtechnique"] = {
            "id": subtechniques,
            "reference": [f"https://attack.mitre.org/techniques/{s.replace('.', '/')}/" for s in subtechniques],
        }
    return technique


def _categories(finding: Finding) -> list[str]:
    if finding.source_kind in WEB_KINDS:
        return ["intrusion_detection", "web"]
    if finding.source_kind == "oabgenerator" or "TargetFilename" in finding.evidence:
        return ["intrusion_detection", "file"]
    if "Image" in finding.evidence or "CommandLine" in finding.evidence:
        return ["intrusion_detection", "process"]
    return ["intrusion_detection"]


def _evidence_name(name: str) -> str:
    """A field name that Elasticsearch will not split into objects (dots become ``_``)."""
    return name.replace(".", "_").strip() or "_"


def ecs_document(finding: Finding, created: datetime | None = None) -> dict[str, object]:
    """The ECS alert document of one finding; ``created`` (the scan's end) is ``event.created``.

    ``@timestamp`` is the finding's time; a finding without one uses ``created`` and is tagged
    ``exhunt_no_event_time`` (Elasticsearch data streams require ``@timestamp``).
    """
    rule = finding.rule
    evidence: Mapping[str, object] = finding.evidence
    tags = ["exhunt", *rule.cves]
    timestamp = utc_iso(finding.time)
    if timestamp is None:
        timestamp = utc_iso(created)
        tags.append("exhunt_no_event_time")
    document: dict[str, object] = {"@timestamp": timestamp, "message": message(finding), "tags": tags}
    _put(document, "ecs.version", ECS_VERSION)
    event: dict[str, object] = {
        "kind": "alert",
        "category": _categories(finding),
        "type": ["info"],
        "module": "exhunt",
        "dataset": "exhunt.finding",
        "provider": finding.source_kind or "unknown",
        "severity": int(rule.level),
        "risk_score": RISK_SCORE[rule.level],
    }
    if created is not None:
        event["created"] = utc_iso(created)
    document["event"] = event
    _put(document, "host.name", finding.host)
    _put(document, "rule.id", rule.id)
    _put(document, "rule.name", rule.title)
    _put(document, "rule.description", rule.description or rule.title)
    if rule.uuid:
        _put(document, "rule.uuid", rule.uuid)
    if rule.references:
        _put(document, "rule.reference", rule.references[0])
    _put(document, "rule.ruleset", "exhunt")
    _put(document, "rule.category", rule.stage.value)
    _put(document, "threat.framework", "MITRE ATT&CK")
    technique = _techniques(rule.attack)
    if technique:
        _put(document, "threat.technique", technique)
    if rule.cves:
        _put(document, "vulnerability.id", list(rule.cves))
        _put(document, "vulnerability.enumeration", "CVE")
    client = valid_ip(finding.client_ip)
    if client:
        _put(document, "source.ip", client)
    if finding.client_ip:
        _put(document, "source.address", finding.client_ip)
    _put(document, "log.file.path", finding.source)
    _put(document, "labels.stage", rule.stage.value)
    _put(document, "labels.level", str(rule.level))

    for name, target, kind in REQUEST_FIELDS:
        value = evidence.get(name)
        if isinstance(value, str) and value not in _EMPTY:
            converted = _convert(value, kind)
            if converted is not None:
                _put(document, target, converted)
    url = document.get("url")
    if isinstance(url, dict) and "path" in url:
        query = evidence.get("cs-uri-query")
        raw_query = query if isinstance(query, str) and query not in _EMPTY else ""
        url["original"] = str(url["path"]) + (f"?{raw_query}" if raw_query else "")
    for name in ("sc-status", "HttpStatus"):
        status = _convert(str(evidence.get(name, "")), _INT)
        if isinstance(status, int):
            event["outcome"] = "success" if status < 400 else "failure"
            break
    for name, target in EVENT_FIELDS:
        value = evidence.get(name)
        if isinstance(value, str) and value not in _EMPTY:
            _put(document, target, value)

    related = [ip for ip in (client, *(valid_ip(evidence.get(n)) for n in ("c-ip", "ClientIpAddress", "s-ip")))
               if ip]
    if related:
        _put(document, "related.ip", list(dict.fromkeys(related)))
    document["exhunt"] = {
        "rule": rule.id,
        "stage": rule.stage.value,
        "level": str(rule.level),
        "cves": list(rule.cves),
        "references": list(rule.references),
        "line": finding.line,
        "origin": finding.origin,
        "source_kind": finding.source_kind,
        "evidence": {_evidence_name(str(k)): v for k, v in evidence.items()},
    }
    return document


def write_ecs(findings: Iterable[Finding], stream: IO[str], created: datetime | None = None) -> int:
    """Write one ECS document per line (NDJSON); returns the count."""
    count = 0
    for finding in findings:
        stream.write(json_line(ecs_document(finding, created)) + "\n")
        count += 1
    return count


def write_ecs_file(findings: Iterable[Finding], folder: Path, created: datetime | None = None) -> Path:
    """Write ``findings.ecs.ndjson`` into ``folder``."""
    path = folder / FILE_NAME
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        write_ecs(findings, stream, created)
    return path

"""Published file indicators (``rules/iocs.yml``): known-bad hashes, web-shell names and paths.

A hash match is ``IOC-HASH-1`` (critical); a published name in its published folder is
``IOC-PATH-1`` (medium); the name alone is ``IOC-NAME-1`` (low: names collide); a file in a known
drop location is the location's own ``IOC-LOC-<n>``. Names Exchange ships (``shipped_names``) are
never reported on name, path or location alone: only content, hash or baseline evidence counts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from exhunt import yamlio
from exhunt.files.places import exchange_relative, windows, without_drive
from exhunt.model import FindingStage, Level, RuleInfo

SHIPPED_FILE = Path(__file__).resolve().parents[1] / "rules" / "iocs.yml"
#: md5/sha1-only indicators are checked for files up to this size (web shells are small).
SMALL_HASH_LIMIT = 4 * 1024 * 1024
_HEX_LENGTHS = {"sha256": 64, "sha1": 40, "md5": 32}
_SCRIPT_EXTENSIONS = (".aspx", ".ashx", ".asmx", ".asp", ".asax", ".ascx", ".php", ".jsp", ".cfm", ".shtml")

HASH_RULE = RuleInfo("IOC-HASH-1", "File hash is a published web-shell or malware indicator", Level.CRITICAL,
                     FindingStage.POST, attack=("T1505.003",), path="rules/iocs.yml",
                     description="The file's SHA-256 (or MD5/SHA-1 for indicators published only so) is listed "
                                 "by a public Exchange-exploitation IOC list.")
PATH_RULE = RuleInfo("IOC-PATH-1", "File name and folder match a published web-shell or tool path", Level.MEDIUM,
                     FindingStage.POST, attack=("T1505.003",), path="rules/iocs.yml",
                     falsepositives=("a legitimate file that happens to carry a published name in that folder",))
NAME_RULE = RuleInfo("IOC-NAME-1", "File name matches a published web-shell or tool name", Level.LOW,
                     FindingStage.POST, attack=("T1505.003",), path="rules/iocs.yml",
                     falsepositives=("name collisions: short names such as shell.aspx or web.aspx are common",))


@dataclass(frozen=True, slots=True)
class Indicator:
    """One published indicator value with its source and citation."""

    kind: str          # sha256, md5, sha1, path, name
    value: str
    source: str
    reference: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Location:
    """A drop location: a file whose path matches ``pattern`` is suspicious whatever its content."""

    rule: RuleInfo
    pattern: re.Pattern[str]
    source: str
    reference: str


@dataclass(frozen=True, slots=True)
class IocHit:
    """An indicator that matched a file: the rule it stands for and what matched."""

    rule: RuleInfo
    indicator: str
    source: str
    reference: str
    note: str = ""


@dataclass(frozen=True)
class IocSet:
    """The loaded indicator table, indexed for per-file lookups."""

    hashes: Mapping[str, tuple[Indicator, ...]]
    #: case-folded file name -> (anchored, key) pairs: anchored keys must equal the drive-less path,
    #: other keys are path suffixes (Exchange paths: the install-relative part).
    paths: Mapping[str, tuple[tuple[Indicator, bool, str], ...]]
    names: Mapping[str, tuple[Indicator, ...]]
    locations: tuple[Location, ...]
    shipped: frozenset[str]
    sources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def small_hash_kinds(self) -> frozenset[str]:
        """Hash kinds other than SHA-256 that some indicator uses (computed only when needed)."""
        return frozenset(kind for kind in ("md5", "sha1") if any(key.startswith(kind + ":") for key in self.hashes))

    def is_shipped(self, path: str) -> bool:
        return _name(path).casefold() in self.shipped

    def path_listed(self, path: str) -> bool:
        """Whether the path itself is a published IOC path (used to examine files outside the places)."""
        return self._path_hit(path) is not None

    def _path_hit(self, path: str) -> Indicator | None:
        candidates = self.paths.get(_name(path).casefold())
        if not candidates:
            return None
        bare = without_drive(path).casefold()
        for indicator, anchored, key in candidates:
            if (bare == key) if anchored else bare.endswith(key):
                return indicator
        return None

    def match(self, path: str, sha256: str, extra: Mapping[str, str] | None = None) -> list[IocHit]:
        """Indicators matching a file: at most one hash hit, one name/path hit and one per location."""
        hits: list[IocHit] = []
        digests = {"sha256": sha256.lower(), **{k: v.lower() for k, v in (extra or {}).items()}}
        for kind, digest in digests.items():
            found = self.hashes.get(f"{kind}:{digest}")
            if found:
                first = found[0]
                hits.append(IocHit(HASH_RULE, f"{kind}:{digest}", _sources(found), first.reference, first.note))
                break
        if self.is_shipped(path):
            return hits
        by_path = self._path_hit(path)
        if by_path is not None:
            hits.append(IocHit(PATH_RULE, by_path.value, by_path.source, by_path.reference, by_path.note))
        else:
            named = self.names.get(_name(path).casefold())
            if named:
                hits.append(IocHit(NAME_RULE, named[0].value, _sources(named), named[0].reference, named[0].note))
        hits.extend(IocHit(location.rule, location.rule.title, location.source, location.reference)
                    for location in self.locations if location.pattern.search(windows(path)))
        return hits

    def rules(self) -> tuple[RuleInfo, ...]:
        """Every rule an indicator match can produce."""
        return (HASH_RULE, PATH_RULE, NAME_RULE, *(location.rule for location in self.locations))


def _name(path: str) -> str:
    return windows(path).rsplit("\\", 1)[-1]


def _sources(found: tuple[Indicator, ...]) -> str:
    return ", ".join(dict.fromkeys(indicator.source for indicator in found))


def load_iocs(path: str | Path | None = None) -> IocSet:
    """Load an indicator table (the shipped one by default); raises ``ValueError`` if it is malformed."""
    text = Path(path or SHIPPED_FILE).read_text(encoding="utf-8")
    data = yamlio.load(text, cached=True)
    if not isinstance(data, dict):
        raise ValueError("IOC file is not a mapping")
    hashes: dict[str, list[Indicator]] = {}
    paths: dict[str, list[tuple[Indicator, bool, str]]] = {}
    names: dict[str, list[Indicator]] = {}
    for entry in data.get("hashes") or ():
        kind = next((k for k in ("sha256", "sha1", "md5") if k in entry), None)
        if kind is None:
            raise ValueError(f"hash entry without sha256/sha1/md5: {entry!r}")
        value = str(entry[kind]).lower()
        if len(value) != _HEX_LENGTHS[kind] or not re.fullmatch("[0-9a-f]+", value):
            raise ValueError(f"malformed {kind}: {value}")
        hashes.setdefault(f"{kind}:{value}", []).append(_indicator(kind, value, entry))
    for entry in data.get("paths") or ():
        value = windows(str(entry["path"]))
        indicator = _indicator("path", value, entry)
        name = _name(value).casefold()
        if value.count("\\") <= 1 and not re.match(r"^[A-Z]:", value, re.IGNORECASE):
            names.setdefault(name, []).append(_indicator("name", _name(value), entry))
            continue
        relative = exchange_relative(value)
        if relative is not None:
            paths.setdefault(name, []).append((indicator, False, relative.casefold()))
        else:
            anchored = bool(re.match(r"^[A-Z]:\\", value, re.IGNORECASE))
            paths.setdefault(name, []).append((indicator, anchored, without_drive(value).casefold()))
        if name.endswith(_SCRIPT_EXTENSIONS):
            names.setdefault(name, []).append(_indicator("name", _name(value), entry))
    for entry in data.get("names") or ():
        value = str(entry["name"])
        names.setdefault(value.casefold(), []).append(_indicator("name", value, entry))
    locations = tuple(
        Location(
            RuleInfo(str(entry["id"]), str(entry["title"]), Level.parse(str(entry["level"])), FindingStage.POST,
                     attack=("T1505.003",), references=(str(entry["reference"]),), path="rules/iocs.yml"),
            re.compile(str(entry["pattern"]), re.IGNORECASE), str(entry["source"]), str(entry["reference"]))
        for entry in data.get("locations") or ())
    shipped = frozenset(str(name).casefold() for name in (data.get("shipped_names") or {}).get("names", ()))
    return IocSet(
        hashes={key: tuple(value) for key, value in hashes.items()},
        paths={key: tuple(value) for key, value in paths.items()},
        names={key: tuple(value) for key, value in names.items()},
        locations=locations,
        shipped=shipped,
        sources=dict(data.get("sources") or {}),
    )


def _indicator(kind: str, value: str, entry: Mapping[str, object]) -> Indicator:
    source, reference = entry.get("source"), entry.get("reference")
    if not source or not reference:
        raise ValueError(f"indicator {value!r} lacks a source or reference")
    return Indicator(kind, value, str(source), str(reference), str(entry.get("note") or ""))


@cache
def shipped() -> IocSet:
    """The indicator table shipped with exhunt, loaded once."""
    return load_iocs()

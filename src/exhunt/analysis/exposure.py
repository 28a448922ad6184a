"""Which ProxyLogon / ProxyShell / ProxyNotShell CVEs an Exchange build leaves open.

The facts come from the shipped build table ``exhunt/rules/exchange_builds.csv`` (one row per
Exchange build, with a ``<family>_fixed`` yes/no column per CVE family and source notes); its
companion document is ``exchange_builds.md`` (cited below by section). The rules applied
(exchange_builds.md §3):

* builds are compared as integer tuples, never as strings (rule 1);
* the third field identifies the CU; within a CU a family is fixed iff the revision is at least
  the lowest revision of that CU's rows marked fixed, and a CU with no such row has no security
  update for the family (rules 2-3; a single global threshold is wrong, rule 4);
* a build whose CU is not in the table is not guessed at (rule 8), except Exchange 2019 CU13 and
  later (incl. Exchange SE), which contain every fix (§1, §2).
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from exhunt.model import Exposure

FAMILIES: dict[str, tuple[str, ...]] = {
    "proxylogon": ("CVE-2021-26855", "CVE-2021-26857", "CVE-2021-26858", "CVE-2021-27065"),
    "proxyshell": ("CVE-2021-34473", "CVE-2021-34523", "CVE-2021-31207"),
    "proxynotshell": ("CVE-2022-41040", "CVE-2022-41082"),
}

FAMILY_LABELS: dict[str, str] = {
    "proxylogon": "ProxyLogon",
    "proxyshell": "ProxyShell",
    "proxynotshell": "ProxyNotShell",
}

#: A cumulative update: (major, minor, build), the first three fields of a build number.
CU = tuple[int, int, int]

_BUILD_RE = re.compile(r"([0-9]{1,5})\.([0-9]{1,5})\.([0-9]{1,5})\.([0-9]{1,5})")

_CSV_COLUMNS = (
    "product",
    "version_name",
    "build_short",
    "build_long",
    "release_date",
    "proxylogon_fixed",
    "proxyshell_fixed",
    "proxynotshell_fixed",
    "notes",
)

# ProxyShell was fixed in two steps: CVE-2021-34473/-34523 by the April 2021 SU, CVE-2021-31207 by
# the May 2021 SU; `proxyshell_fixed` is "yes" only from the May level. The table marks April-only
# rows in `notes` with this phrase (exchange_builds.md §1 "ProxyShell", §3 rule 5).
_APRIL_2021_CVES = ("CVE-2021-34473", "CVE-2021-34523")
_PARTIAL_MARKER = "ProxyShell partial: contains Apr21SU fixes for CVE-2021-34473/-34523"

# CVEs of a family that Microsoft lists for a product or CU, where that is fewer than the whole
# family; keys are a CU or a (major, minor) product. Exchange 2010 SP3: ProxyLogon only
# CVE-2021-26857, ProxyShell/ProxyNotShell not listed (§1, §3 rule 6). Exchange 2013 SP1:
# ProxyLogon only CVE-2021-26857 and CVE-2021-27065 (§1, §3 rule 7). Source: MSRC CVE records.
_APPLICABLE: dict[tuple[int, ...], dict[str, tuple[str, ...]]] = {
    (14, 3): {"proxylogon": ("CVE-2021-26857",), "proxyshell": (), "proxynotshell": ()},
    (15, 0, 847): {"proxylogon": ("CVE-2021-26857", "CVE-2021-27065")},
}

# Why a family is not assessed at all for a product (exchange_builds.md §3 rule 6 and Addendum).
_NOT_LISTED_NOTES: dict[tuple[int, int], str] = {
    (14, 3): "Exchange 2010 is out of support; Microsoft does not list it for ProxyShell/ProxyNotShell "
    "(not assessed by Microsoft)",
}

# The March 2021 SU for Exchange 2016 CU8 / CU9 is 15.1.1415.10 / 15.1.1466.16 per Microsoft
# Learn and MSRC (the table) but 15.1.1415.8 / 15.1.1466.13 per CSS-Exchange; the lower value is
# accepted, with a note (exchange_builds.md §7 and Addendum). CU -> accepted revision.
_DISPUTED_MAR21: dict[CU, int] = {(15, 1, 1415): 8, (15, 1, 1466): 13}

# Exchange 2019 CU13 (15.2.1258.12, May 2023) and every later CU, including Exchange SE (15.2 with
# build >= 2562), contain all three fixes; the table ends before CU13 (exchange_builds.md §1, §2).
_ALL_FIXED_FROM = (15, 2, 1258)
_SE_FIRST_BUILD = 2562


@dataclass(frozen=True, slots=True, order=True)
class Build:
    """An Exchange build number; ordering is by the four integers, never by text."""

    major: int
    minor: int
    build: int
    revision: int

    @classmethod
    def parse(cls, text: str) -> Build | None:
        """Parse ``15.1.2176.2`` or ``15.01.2176.002``; anything else gives ``None``."""
        match = _BUILD_RE.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            return None
        major, minor, build, revision = (int(part) for part in match.groups())
        return cls(major, minor, build, revision)

    @property
    def cu(self) -> CU:
        return (self.major, self.minor, self.build)

    @property
    def long(self) -> str:
        """The zero-padded form used by Microsoft Learn and ExSetup.exe, e.g. ``15.01.2176.002``."""
        return f"{self.major}.{self.minor:02d}.{self.build:04d}.{self.revision:03d}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}.{self.revision}"


@dataclass(frozen=True, slots=True)
class BuildRow:
    """One row of the build table; ``fixed`` holds the families whose column says ``yes``."""

    build: Build
    product: str
    version_name: str
    release_date: str
    fixed: frozenset[str]
    notes: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one build leaves open: CVEs open and fixed (sorted) and notes on the reasoning."""

    unpatched: tuple[str, ...]
    fixed: tuple[str, ...]
    notes: tuple[str, ...]


def open_families(exposure: Exposure) -> list[str]:
    """Per campaign family, the CVEs the build leaves open: ``ProxyLogon 4/4``, ``ProxyNotShell 2/2 (mitigated)``."""
    covered = {cve for mitigation in exposure.mitigations for cve in mitigation.covers}
    parts = []
    for family, cves in FAMILIES.items():
        left = [cve for cve in cves if cve in exposure.unpatched]
        if left:
            note = " (mitigated)" if any(cve in covered for cve in left) else ""
            parts.append(f"{FAMILY_LABELS[family]} {len(left)}/{len(cves)}{note}")
    return parts


def _cve_key(cve: str) -> tuple[int, int]:
    _, year, number = cve.split("-")
    return (int(year), int(number))


def _sorted_cves(cves: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(cves), key=_cve_key))


def applicable_cves(build: Build, family: str) -> tuple[str, ...]:
    """The CVEs of ``family`` that Microsoft lists for the product/CU of ``build``."""
    for key in (build.cu, (build.major, build.minor)):
        scoped = _APPLICABLE.get(key, {})
        if family in scoped:
            return scoped[family]
    return FAMILIES[family]


def _parse_row(line: int, raw: dict[str, str]) -> BuildRow:
    build = Build.parse(raw["build_short"])
    if build is None or Build.parse(raw["build_long"]) != build:
        raise ValueError(f"build table line {line}: bad build {raw['build_short']!r}/{raw['build_long']!r}")
    fixed = set()
    for family in FAMILIES:
        value = raw[f"{family}_fixed"]
        if value not in ("yes", "no"):
            raise ValueError(f"build table line {line}: {family}_fixed must be yes or no, not {value!r}")
        if value == "yes":
            fixed.add(family)
    return BuildRow(
        build, raw["product"], raw["version_name"], raw["release_date"], frozenset(fixed), raw["notes"]
    )


def _cves_fixed_by(row: BuildRow) -> Iterator[str]:
    for family in row.fixed:
        yield from FAMILIES[family]
    if "proxyshell" not in row.fixed and _PARTIAL_MARKER in row.notes:
        yield from _APRIL_2021_CVES


class BuildTable:
    """The build table: Exchange builds and the CVE families each one contains the fix for."""

    def __init__(self, rows: Iterable[BuildRow]) -> None:
        self.rows: tuple[BuildRow, ...] = tuple(sorted(rows, key=lambda row: row.build))
        self._by_build: dict[Build, BuildRow] = {}
        self._cus: dict[CU, list[BuildRow]] = {}
        self._products: dict[tuple[int, int], str] = {}
        self._first_fix: dict[tuple[str, CU], BuildRow] = {}
        for row in self.rows:
            if row.build in self._by_build:
                raise ValueError(f"build table lists {row.build} twice")
            self._by_build[row.build] = row
            self._cus.setdefault(row.build.cu, []).append(row)
            self._products.setdefault((row.build.major, row.build.minor), row.product)
            for cve in _cves_fixed_by(row):  # rows are ascending: the first one seen is the lowest
                self._first_fix.setdefault((cve, row.build.cu), row)

    @classmethod
    def from_csv(cls, text: str) -> BuildTable:
        reader = csv.DictReader(io.StringIO(text))
        if tuple(reader.fieldnames or ()) != _CSV_COLUMNS:
            raise ValueError(f"build table columns {reader.fieldnames} are not {list(_CSV_COLUMNS)}")
        return cls(_parse_row(number, raw) for number, raw in enumerate(reader, start=2))

    @classmethod
    def default(cls) -> BuildTable:
        """The table shipped with exhunt, loaded once."""
        return _default_table()

    # --- identification -------------------------------------------------------------------

    def knows_cu(self, build: Build) -> bool:
        return build.cu in self._cus

    def newer_than_table(self, build: Build) -> bool:
        """Exchange 2019 CU13 or later (incl. SE) whose CU the table does not list."""
        return (
            build.cu not in self._cus
            and build.major == 15
            and build.minor == 2
            and build.cu >= _ALL_FIXED_FROM
        )

    def product(self, build: Build) -> str | None:
        """The product (``Exchange Server 2016``, ``Exchange Server SE``...) by major.minor."""
        if (build.major, build.minor) == (15, 2) and build.build >= _SE_FIRST_BUILD:
            return "Exchange Server SE"
        return self._products.get((build.major, build.minor))

    def cu_name(self, build: Build) -> str | None:
        """The name of the build's CU (its release row), e.g. ``Exchange Server 2016 CU19``."""
        rows = self._cus.get(build.cu)
        return rows[0].version_name if rows else None

    def lookup(self, build: Build) -> str | None:
        """The table name of ``build``, or of its CU (marked as not in the table); ``None`` if unknown."""
        row = self._by_build.get(build)
        if row is not None:
            return row.version_name
        name = self.cu_name(build)
        if name is None and self.newer_than_table(build):
            name = (
                "Exchange Server SE"
                if build.build >= _SE_FIRST_BUILD
                else "Exchange Server 2019 CU13 or later"
            )
        return None if name is None else f"{name} (build not in table)"

    # --- exposure ---------------------------------------------------------------------------

    def is_fixed(self, cve: str, build: Build) -> bool:
        """Whether ``build`` contains the fix for ``cve`` (its CU must be in the table)."""
        if self.newer_than_table(build):
            return True
        first = self._first_fix.get((cve, build.cu))
        if first is None:
            return False
        if first is self._cus[build.cu][0]:  # the CU itself shipped with the fix
            return True
        floor = first.build.revision
        if cve in FAMILIES["proxylogon"]:
            floor = min(floor, _DISPUTED_MAR21.get(build.cu, floor))
        return build.revision >= floor

    def unpatched(self, build: Build) -> tuple[str, ...] | None:
        """Sorted CVE ids ``build`` leaves open; ``None`` when its CU is unknown (not guessed)."""
        verdict = self.check(build)
        return None if verdict is None else verdict.unpatched

    def check(self, build: Build) -> Verdict | None:
        """Open and fixed CVEs of ``build``, with notes; ``None`` when its CU is unknown."""
        if self.newer_than_table(build):
            return Verdict(
                (), _sorted_cves(c for cves in FAMILIES.values() for c in cves), (_newer_note(build),)
            )
        if not self.knows_cu(build):
            return None
        unpatched: list[str] = []
        fixed: list[str] = []
        notes: list[str] = []
        for family in FAMILIES:
            cves = applicable_cves(build, family)
            still_open = [cve for cve in cves if not self.is_fixed(cve, build)]
            unpatched += still_open
            fixed += [cve for cve in cves if cve not in still_open]
            notes += self._family_notes(family, build, still_open)
        notes += _scope_notes(build)
        return Verdict(_sorted_cves(unpatched), _sorted_cves(fixed), tuple(notes))

    def _family_notes(self, family: str, build: Build, still_open: list[str]) -> list[str]:
        label = FAMILY_LABELS[family]
        if not still_open:
            return self._disputed_notes(family, build)
        fixes = [self._first_fix.get((cve, build.cu)) for cve in still_open]
        if any(row is None for row in fixes):
            return [self._no_update_note(family, build)]
        fix = max((row for row in fixes if row is not None), key=lambda row: row.build)
        partly = "partially fixed: " if len(still_open) < len(applicable_cves(build, family)) else ""
        notes = [
            f"{label} {partly}{', '.join(_sorted_cves(still_open))} open; "
            f"fixed in this CU from {fix.version_name} ({fix.build})"
        ]
        if family == "proxynotshell":
            notes.append(_PNS_MITIGATION_NOTE)
        return notes

    def _no_update_note(self, family: str, build: Build) -> str:
        unit = "update rollup" if (build.major, build.minor) == (14, 3) else "CU"
        note = (
            f"no security update for {FAMILY_LABELS[family]} exists for {self.cu_name(build)}; "
            f"a newer {unit} is required"
        )
        later = self._next_fixed_row(family, build)
        if later is not None:
            note += f" (first later build with the fix: {later.version_name}, {later.build})"
        return note

    def _next_fixed_row(self, family: str, build: Build) -> BuildRow | None:
        return next(
            (
                row
                for row in self.rows
                if row.build.cu > build.cu and row.build.major == build.major and family in row.fixed
            ),
            None,
        )

    def _disputed_notes(self, family: str, build: Build) -> list[str]:
        first = self._first_fix.get((FAMILIES[family][0], build.cu))
        accepted = _DISPUTED_MAR21.get(build.cu)
        if family != "proxylogon" or first is None or accepted is None:
            return []
        if not accepted <= build.revision < first.build.revision:
            return []
        disputed = Build(*build.cu, accepted)
        return [
            f"sources disagree on the ProxyLogon fix for {self.cu_name(build)}: {first.version_name} is "
            f"{first.build} per Microsoft Learn/MSRC but {disputed} per CSS-Exchange; {build} is treated "
            "as fixed (exchange_builds.md §7 and Addendum)"
        ]


_PNS_MITIGATION_NOTE = (
    "ProxyNotShell URL-rewrite mitigations (EOMTv2, Emergency Mitigation Service) are not fixes and "
    "cannot be seen in the build number"
)


def _newer_note(build: Build) -> str:
    return (
        f"build {build} is newer than the shipped build table; Exchange 2019 CU13 (15.2.1258) and later, "
        "including Exchange SE, contain the ProxyLogon, ProxyShell and ProxyNotShell fixes"
    )


def _scope_notes(build: Build) -> list[str]:
    notes = []
    for family, cves in FAMILIES.items():
        listed = applicable_cves(build, family)
        if listed and len(listed) < len(cves):
            notes.append(
                f"Microsoft lists this product only for {', '.join(listed)} of {FAMILY_LABELS[family]}"
            )
    not_listed = _NOT_LISTED_NOTES.get((build.major, build.minor))
    if not_listed is not None:
        notes.append(not_listed)
    return notes


@functools.cache
def _default_table() -> BuildTable:
    text = (resources.files("exhunt") / "rules" / "exchange_builds.csv").read_text(encoding="utf-8")
    return BuildTable.from_csv(text)


# --- host assessment --------------------------------------------------------------------------

_FIXED_IS_NOT_CLEAN = (
    "a fixed build does not show that the server was not compromised before the fix was installed "
    "(exchange_builds.md §3 rule 9)"
)


def _aware(moment: datetime) -> datetime:
    """Naive times are taken as UTC so that they can be ordered with aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_observations(
    builds: Iterable[tuple[str, datetime | None]],
) -> tuple[list[tuple[Build, datetime | None]], list[str]]:
    observed: list[tuple[Build, datetime | None]] = []
    ignored: list[str] = []
    for text, moment in builds:
        build = Build.parse(text)
        if build is None:
            ignored.append(str(text))
        else:
            observed.append((build, None if moment is None else _aware(moment)))
    return observed, ignored


def _ignored_notes(ignored: list[str]) -> list[str]:
    distinct = sorted(set(ignored))
    if not distinct:
        return []
    shown = ", ".join(repr(text) for text in distinct[:5])
    more = f" and {len(distinct) - 5} more" if len(distinct) > 5 else ""
    return [f"ignored {len(distinct)} unparseable build string(s): {shown}{more}"]


def _latest(observed: list[tuple[Build, datetime | None]]) -> tuple[Build, list[str]]:
    """The build seen last; ties in time, and builds seen without a time, go to the highest build."""
    timed = [(moment, build) for build, moment in observed if moment is not None]
    untimed = [build for build, moment in observed if moment is None]
    if not timed:
        return max(untimed), []
    latest = max(timed)[1]
    if untimed and max(untimed) > latest:
        newest = max(untimed)
        return newest, [
            f"build {newest} was seen without a time and is higher than {latest}, the build seen last; "
            f"{newest} is assumed to be the current build"
        ]
    return latest, []


def _earlier_build_note(table: BuildTable, build: Build) -> str:
    verdict = table.check(build)
    name = table.lookup(build) or "CU not in table"
    if verdict is None:
        return f"earlier build {build} ({name}): not assessed (its CU is unknown)"
    left_open = ", ".join(verdict.unpatched) or "nothing"
    return f"earlier build {build} ({name}) left open: {left_open}"


def _history_notes(table: BuildTable, seen: list[Build], current: Build) -> list[str]:
    if len(seen) < 2:
        return []
    notes = [
        f"{len(seen)} builds were seen ({', '.join(map(str, seen))}): the server was updated during the "
        f"evidence window; exposure is given for the latest build, {current}, and earlier builds may "
        "have been exposed"
    ]
    return notes + [_earlier_build_note(table, build) for build in seen if build != current]


def _unknown_product(table: BuildTable, build: Build) -> str | None:
    product = table.product(build)
    return None if product is None else f"{product} (CU not in table)"


def assess(builds: Iterable[tuple[str, datetime | None]], table: BuildTable | None = None) -> Exposure:
    """The exposure of a host from the Exchange builds seen in its evidence (build text, time seen)."""
    table = table or BuildTable.default()
    observed, ignored = _parse_observations(builds)
    if not observed:
        return Exposure(build=None, notes=("build unknown: exposure not assessed", *_ignored_notes(ignored)))
    current, notes = _latest(observed)
    seen = sorted({build for build, _ in observed})
    verdict = table.check(current)
    if verdict is None:
        notes.insert(0, f"build {current} matches no known Exchange CU: not assessed")
    else:
        notes = [*verdict.notes, *notes]
        if verdict.fixed:
            notes.append(_FIXED_IS_NOT_CLEAN)
    notes += _history_notes(table, seen, current) + _ignored_notes(ignored)
    return Exposure(
        build=str(current),
        product=table.lookup(current) or _unknown_product(table, current),
        unpatched=() if verdict is None else verdict.unpatched,
        status="unknown" if verdict is None else "known",
        builds_seen=tuple(str(build) for build in seen),
        notes=tuple(notes),
    )

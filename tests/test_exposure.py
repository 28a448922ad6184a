"""Exposure of an Exchange build to ProxyLogon / ProxyShell / ProxyNotShell (exchange_builds.md)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from exhunt.analysis.exposure import FAMILIES, Build, BuildTable, applicable_cves, assess
from exhunt.model import Exposure

PL = ("CVE-2021-26855", "CVE-2021-26857", "CVE-2021-26858", "CVE-2021-27065")
PS = ("CVE-2021-31207", "CVE-2021-34473", "CVE-2021-34523")
PNS = ("CVE-2022-41040", "CVE-2022-41082")
ALL = PL + PS + PNS
T0 = datetime(2021, 3, 1, tzinfo=UTC)


def unpatched(build: str) -> tuple[str, ...] | None:
    parsed = Build.parse(build)
    assert parsed is not None
    return BuildTable.default().unpatched(parsed)


def one(build: str) -> Exposure:
    return assess([(build, None)])


def has_note(exposure: Exposure, *fragments: str) -> bool:
    return any(all(fragment in note for fragment in fragments) for note in exposure.notes)


# --- parsing and ordering ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["15.1.2176.2", "15.01.2176.002", " 15.01.2176.0002 "])
def test_parse_short_and_long_forms(text: str) -> None:
    build = Build.parse(text)
    assert build == Build(15, 1, 2176, 2)
    assert str(build) == "15.1.2176.2"
    assert build.long == "15.01.2176.002"


def test_parse_long_form_example() -> None:
    assert Build.parse("15.01.2375.007") == Build(15, 1, 2375, 7)


@pytest.mark.parametrize("text", ["", "15.1.2176", "15.1.2176.2.1", "Version 15.2 (Build 986.5)", "a.b.c.d"])
def test_parse_rejects_other_text(text: str) -> None:
    assert Build.parse(text) is None


def test_builds_compare_as_integers_not_strings() -> None:
    # the trap: as strings, "15.1.2176.9" > "15.1.2176.12"
    assert Build.parse("15.1.2176.9") < Build.parse("15.1.2176.12")
    assert unpatched("15.1.2176.9") == PS + PNS  # Mar21SU
    assert unpatched("15.1.2176.12") == ("CVE-2021-31207", *PNS)  # Apr21SU: partial ProxyShell


# --- rule 4: no single global threshold ---------------------------------------------------------


def test_cu23_rtm_is_proxynotshell_vulnerable_although_above_cu22_nov22su() -> None:
    assert Build.parse("15.1.2507.6") > Build.parse("15.1.2375.37")
    assert unpatched("15.1.2507.6") == PNS
    assert unpatched("15.1.2375.37") == ()
    assert unpatched("15.1.2507.16") == ()


def test_cu19_feb21su_is_proxylogon_vulnerable_although_above_cu18_mar21su() -> None:
    assert unpatched("15.1.2176.4") == ALL
    assert unpatched("15.1.2106.13") == PS + PNS


def test_2016_cu20_proxyshell_steps() -> None:
    assert unpatched("15.1.2242.4") == PS + PNS  # CU20 contains ProxyLogon fix
    partial = one("15.1.2242.8")
    assert partial.unpatched == ("CVE-2021-31207", *PNS)
    assert has_note(partial, "ProxyShell partially fixed", "CVE-2021-31207", "15.1.2242.10")
    assert unpatched("15.1.2242.10") == PNS


@pytest.mark.parametrize(
    ("cu", "april", "may"),
    # exchange_builds.md §2: April 2021 SU and May 2021 SU revisions of the five CUs that got both
    [
        ("15.0.1497", 15, 18),
        ("15.1.2176", 12, 14),
        ("15.1.2242", 8, 10),
        ("15.2.792", 13, 15),
        ("15.2.858", 10, 12),
    ],
)
def test_proxyshell_april_and_may_thresholds(cu: str, april: int, may: int) -> None:
    def open_ps(revision: int) -> tuple[str, ...]:
        result = unpatched(f"{cu}.{revision}")
        assert result is not None
        return tuple(cve for cve in result if cve in PS)

    assert open_ps(april - 1) == PS
    assert open_ps(april) == ("CVE-2021-31207",)
    assert open_ps(may - 1) == ("CVE-2021-31207",)
    assert open_ps(may) == ()


def test_2019_cu8_mar21su() -> None:
    exposure = one("15.2.792.10")
    assert exposure.product == "Exchange Server 2019 CU8 Mar21SU"
    assert exposure.unpatched == PS + PNS
    assert unpatched("15.2.792.5") == ALL


def test_2019_cu12_oct22su_is_not_fixed_nov22su_is() -> None:
    exposure = one("15.2.1118.15")
    assert exposure.unpatched == PNS
    assert has_note(exposure, "URL-rewrite mitigations", "not fixes")
    assert unpatched("15.2.1118.20") == ()


@pytest.mark.parametrize(
    ("build", "product"),
    [
        ("15.2.1258.12", "Exchange Server 2019 CU13 or later (build not in table)"),
        ("15.2.2562.17", "Exchange Server SE (build not in table)"),
    ],
)
def test_2019_cu13_and_exchange_se_are_fixed(build: str, product: str) -> None:
    exposure = one(build)
    assert exposure.status == "known"
    assert exposure.unpatched == ()
    assert exposure.product == product
    assert has_note(exposure, "newer than the shipped build table")


def test_2019_between_cu12_and_cu13_is_not_guessed() -> None:
    assert unpatched("15.2.1200.1") is None


# --- Exchange 2010 and 2013 SP1 (rules 6 and 7) -------------------------------------------------


def test_exchange_2010_ru31() -> None:
    exposure = one("14.3.509.0")
    assert exposure.status == "known"
    assert exposure.unpatched == ("CVE-2021-26857",)
    assert exposure.product == "Update Rollup 31 for Exchange Server 2010 SP3"
    assert (
        "Exchange 2010 is out of support; Microsoft does not list it for ProxyShell/ProxyNotShell "
        "(not assessed by Microsoft)"
    ) in exposure.notes
    assert has_note(exposure, "14.3.513.0")


def test_exchange_2010_ru32() -> None:
    exposure = one("14.3.513.0")
    assert exposure.unpatched == ()
    assert has_note(exposure, "Exchange 2010 is out of support")


def test_exchange_2013_sp1() -> None:
    assert unpatched("15.0.847.32") == ("CVE-2021-26857", "CVE-2021-27065", *PS, *PNS)
    assert unpatched("15.0.847.64") == PS + PNS
    assert has_note(one("15.0.847.64"), "no security update for ProxyShell", "Exchange Server 2013 SP1")


# --- CUs without security updates, disputed builds, unknown builds ------------------------------


def test_2016_cu7_has_no_proxylogon_update() -> None:
    exposure = one("15.1.1261.35")
    assert exposure.unpatched == ALL
    assert has_note(
        exposure,
        "no security update for ProxyLogon exists for Exchange Server 2016 CU7",
        "a newer CU is required",
    )


@pytest.mark.parametrize(("cu", "disputed", "learn"), [("15.1.1415", 8, 10), ("15.1.1466", 13, 16)])
def test_2016_cu8_cu9_march_su_discrepancy(cu: str, disputed: int, learn: int) -> None:
    exposure = one(f"{cu}.{disputed}")
    assert exposure.unpatched == PS + PNS
    assert has_note(exposure, "sources disagree", f"{cu}.{learn}", f"{cu}.{disputed}")
    assert unpatched(f"{cu}.{disputed - 1}") == ALL
    learn_exposure = one(f"{cu}.{learn}")
    assert learn_exposure.unpatched == PS + PNS
    assert not has_note(learn_exposure, "sources disagree")


def test_unlisted_revision_of_a_known_cu() -> None:
    exposure = one("15.1.2176.10")
    assert exposure.product == "Exchange Server 2016 CU19 (build not in table)"
    assert exposure.unpatched == PS + PNS


def test_unknown_cu_is_not_assessed() -> None:
    exposure = one("15.1.9999.1")
    assert exposure.status == "unknown"
    assert exposure.unpatched == ()
    assert exposure.build == "15.1.9999.1"
    assert "build 15.1.9999.1 matches no known Exchange CU: not assessed" in exposure.notes
    assert BuildTable.default().unpatched(Build(15, 1, 9999, 1)) is None


def test_no_builds() -> None:
    exposure = assess([])
    assert exposure.status == "unknown"
    assert exposure.build is None
    assert exposure.unpatched == ()
    assert exposure.notes == ("build unknown: exposure not assessed",)


def test_unparseable_builds_are_ignored_with_a_note() -> None:
    exposure = assess([("garbage", T0), ("15.1.2176.14", None)])
    assert exposure.build == "15.1.2176.14"
    assert exposure.builds_seen == ("15.1.2176.14",)
    assert has_note(exposure, "ignored 1 unparseable", "'garbage'")
    only_bad = assess([("15.1", None)])
    assert only_bad.status == "unknown"
    assert only_bad.notes[0] == "build unknown: exposure not assessed"


# --- several builds over time --------------------------------------------------------------------


def test_latest_build_in_time_wins() -> None:
    observations = [
        ("15.1.2242.10", T0 + timedelta(days=80)),
        ("15.01.2176.002", T0),
        ("15.1.2176.2", T0 + timedelta(days=1)),
        ("15.1.2242.4", T0 + timedelta(days=20)),
    ]
    exposure = assess(observations)
    assert exposure.build == "15.1.2242.10"
    assert exposure.product == "Exchange Server 2016 CU20 May21SU"
    assert exposure.unpatched == PNS
    assert exposure.builds_seen == ("15.1.2176.2", "15.1.2242.4", "15.1.2242.10")
    assert has_note(exposure, "3 builds were seen", "earlier builds may have been exposed")
    assert has_note(exposure, "earlier build 15.1.2176.2", ", ".join(ALL))
    assert has_note(exposure, "earlier build 15.1.2242.4", ", ".join(PS + PNS))


def test_latest_in_time_beats_highest_build() -> None:
    exposure = assess([("15.1.2242.10", T0), ("15.1.2176.14", T0 + timedelta(days=1))])
    assert exposure.build == "15.1.2176.14"
    assert exposure.builds_seen == ("15.1.2176.14", "15.1.2242.10")


def test_ties_and_missing_times_go_to_the_highest_build() -> None:
    assert assess([("15.1.2176.14", T0), ("15.1.2176.9", T0)]).build == "15.1.2176.14"
    assert assess([("15.1.2176.9", None), ("15.1.2176.14", None)]).build == "15.1.2176.14"
    untimed_higher = assess([("15.1.2176.9", T0), ("15.1.2176.14", None)])
    assert untimed_higher.build == "15.1.2176.14"
    assert has_note(untimed_higher, "seen without a time")
    assert assess([("15.1.2176.14", T0), ("15.1.2176.9", None)]).build == "15.1.2176.14"


def test_naive_and_aware_times_can_be_mixed() -> None:
    naive = datetime(2021, 3, 2)  # noqa: DTZ001 - evidence may carry naive times
    assert assess([("15.1.2176.9", naive), ("15.1.2176.2", T0)]).build == "15.1.2176.9"


# --- the whole table -----------------------------------------------------------------------------


def _csv_rows() -> list[dict[str, str]]:
    text = (resources.files("exhunt") / "rules" / "exchange_builds.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_package_csv_is_the_reference_table() -> None:
    rows = _csv_rows()
    assert len(rows) == 247
    assert len(BuildTable.default().rows) == 247
    assert BuildTable.default() is BuildTable.default()


def _expected_open(row: dict[str, str], build: Build) -> set[str]:
    expected: set[str] = set()
    for family in FAMILIES:
        if row[f"{family}_fixed"] == "yes":
            continue
        if family == "proxyshell" and "ProxyShell partial" in row["notes"]:
            expected.add("CVE-2021-31207")  # April 2021 SU level (§3 rule 5)
        else:
            # 2010: ProxyLogon = CVE-2021-26857 only, ProxyShell/ProxyNotShell not assessed (rule 6);
            # 2013 SP1: ProxyLogon = CVE-2021-26857/-27065 only (rule 7)
            expected.update(applicable_cves(build, family))
    return expected


@pytest.mark.parametrize("row", _csv_rows(), ids=lambda row: row["build_short"])
def test_every_row_agrees_with_its_fixed_columns(row: dict[str, str]) -> None:
    table = BuildTable.default()
    build = Build.parse(row["build_short"])
    assert build is not None
    assert Build.parse(row["build_long"]) == build
    assert table.lookup(build) == row["version_name"]
    assert set(table.unpatched(build) or ()) == _expected_open(row, build)
    exposure = assess([(row["build_long"], None)])
    assert exposure.status == "known"
    assert exposure.product == row["version_name"]


def test_documented_exceptions_are_what_the_csv_notes_say() -> None:
    rows = _csv_rows()
    e2010 = [row for row in rows if row["build_short"].startswith("14.3.")]
    assert e2010 and all("MSRC lists 2010 SP3 only for CVE-2021-26857" in row["notes"] for row in e2010)
    assert all("ProxyShell/ProxyNotShell: 2010 not listed by MSRC" in row["notes"] for row in e2010)
    sp1 = [row for row in rows if row["build_short"].startswith("15.0.847.")]
    assert len(sp1) == 2
    assert all("only by CVE-2021-26857 and CVE-2021-27065" in row["notes"] for row in sp1)
    partial = sorted(row["build_short"] for row in rows if "ProxyShell partial" in row["notes"])
    assert partial == ["15.0.1497.15", "15.1.2176.12", "15.1.2242.8", "15.2.792.13", "15.2.858.10"]


def test_table_rejects_bad_data() -> None:
    header = (
        "product,version_name,build_short,build_long,release_date,"
        "proxylogon_fixed,proxyshell_fixed,proxynotshell_fixed,notes\n"
    )
    with pytest.raises(ValueError, match="yes or no"):
        BuildTable.from_csv(header + "P,V,15.1.1.1,15.01.0001.001,2020,maybe,no,no,\n")
    with pytest.raises(ValueError, match="bad build"):
        BuildTable.from_csv(header + "P,V,15.1.1.1,15.01.0001.002,2020,no,no,no,\n")
    with pytest.raises(ValueError, match="twice"):
        BuildTable.from_csv(header + "P,V,15.1.1.1,15.1.1.1,2020,no,no,no,\n" * 2)
    with pytest.raises(ValueError, match="columns"):
        BuildTable.from_csv("a,b\n1,2\n")


def test_exposure_serialises() -> None:
    data = one("15.1.2507.6").to_dict()
    assert data["unpatched"] == list(PNS)
    assert data["status"] == "known"
    assert data["product"] == "Exchange Server 2016 CU23"


def test_revision_below_a_cu_that_shipped_with_the_fix_is_fixed() -> None:
    # exchange_builds.md §2 "CU = the CU itself already contains the fix": any build of 2016 CU23
    # (RTM 15.1.2507.6) contains the ProxyLogon and ProxyShell fixes, even an unlisted lower revision.
    assert unpatched("15.1.2507.3") == PNS
    assert unpatched("15.2.1258.1") == ()

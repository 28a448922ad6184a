"""Host stage and CVE assessability."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exhunt.analysis.verdict import assessment, host_stage
from exhunt.model import Finding, FindingStage, Level, RuleInfo, SourceCoverage, Stage

T0 = datetime(2021, 3, 3, 6, 49, tzinfo=UTC)


def finding(rule: str, level: Level, stage: FindingStage, minute: int = 0) -> Finding:
    info = RuleInfo(id=rule, title=rule, level=level, stage=stage)
    return Finding("EXCH01", info, T0.replace(minute=minute), "C:\\x.log", 3, {})


@pytest.mark.parametrize(("findings", "assessed", "expected"), [
    ([], True, Stage.CLEAN),
    ([], False, Stage.UNKNOWN),
    ([finding("A", Level.INFORMATIONAL, FindingStage.POST)], True, Stage.CLEAN),
    ([finding("A", Level.LOW, FindingStage.EXPLOIT)], True, Stage.PROBED),
    ([finding("A", Level.MEDIUM, FindingStage.PROBE)], True, Stage.PROBED),
    ([finding("A", Level.CRITICAL, FindingStage.EXPLOIT), finding("B", Level.MEDIUM, FindingStage.PROBE)], True,
     Stage.EXPLOITED),
    ([finding("A", Level.HIGH, FindingStage.POST), finding("B", Level.CRITICAL, FindingStage.EXPLOIT)], True,
     Stage.COMPROMISED),
])
def test_stage_is_the_highest_supported(findings: list[Finding], assessed: bool, expected: Stage) -> None:
    assert host_stage(findings, assessed)[0] is expected


def test_stage_reasons_name_the_supporting_rules_once_earliest_first() -> None:
    findings = [finding("LATE", Level.CRITICAL, FindingStage.EXPLOIT, 30),
                finding("EARLY", Level.CRITICAL, FindingStage.EXPLOIT, 10),
                finding("EARLY", Level.CRITICAL, FindingStage.EXPLOIT, 20),
                finding("PROBE", Level.HIGH, FindingStage.PROBE, 0)]
    stage, reasons = host_stage(findings, True)
    assert stage is Stage.EXPLOITED
    assert [r.split(" ")[0] for r in reasons] == ["EARLY", "LATE"]
    assert "2021-03-03T06:10:00.000Z in C:\\x.log:3" in reasons[0]


def coverage(kind: str, records: int = 5) -> SourceCoverage:
    return SourceCoverage(kind, 1, records, T0, T0, 0)


def test_assessment_lists_what_each_cve_needs() -> None:
    assessed, gaps = assessment({"iis": coverage("iis"), "evtx:Security": coverage("evtx:Security")})
    assert [a.split(" ")[0] for a in assessed] == [
        "CVE-2021-26855", "CVE-2021-26857", "CVE-2021-27065", "CVE-2021-34473:", "CVE-2021-34523:",
        "CVE-2021-31207", "CVE-2022-41040:", "CVE-2022-41082"]
    text = "\n".join(gaps)
    assert "CVE-2021-26855 only partly assessed: Exchange HttpProxy logs" in text
    assert "CVE-2021-26857 only partly assessed: the Application event log" in text
    assert "CVE-2021-26858 not assessed: OABGeneratorLog" in text
    assert "CVE-2022-41082 only partly assessed: Rps_Http logs" in text
    assert "CVE-2021-34473" not in text  # IIS logs are all it needs


def test_full_evidence_assesses_every_cve() -> None:
    kinds = ("httpproxy", "ecp-server", "oabgenerator", "iis", "rps-http", "evtx:Application",
             "evtx:MSExchange Management")
    assessed, gaps = assessment({k: coverage(k) for k in kinds})
    assert gaps == ()
    assert len(assessed) == 9 and not [a for a in assessed if "(partly)" in a]
    assessed, gaps = assessment({k: coverage(k) for k in kinds[:4]})
    assert [g.split(" ")[0] for g in gaps] == ["CVE-2021-26857", "CVE-2021-31207", "CVE-2022-41082"]


def test_files_with_no_records_do_not_count_as_assessed() -> None:
    assessed, _ = assessment({"httpproxy": coverage("httpproxy", 0)})
    assert assessed == ()


def test_staging_archive_matters_only_after_exploitation() -> None:
    archive = RuleInfo("ARCH-STAGING-1", "archive", Level.LOW, FindingStage.POST, after_exploitation=True)
    zipped = Finding("EXCH01", archive, T0, "C:\\ProgramData\\it.zip", None, {})
    assert host_stage([zipped], True)[0] is Stage.PROBED  # the McAfee-zip lesson: alone it is low
    ssrf = finding("PL-SSRF-1", Level.CRITICAL, FindingStage.EXPLOIT)
    stage, reasons = host_stage([zipped, ssrf], True)
    assert stage is Stage.COMPROMISED
    assert "relevant because the host shows exploitation" in reasons[0]

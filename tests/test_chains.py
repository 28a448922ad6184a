"""Exposure at the time of the activity: the same requests against patched and unpatched builds."""

from __future__ import annotations

from datetime import UTC, datetime

from exhunt.analysis.chains import BuildSeen, build_at, chains
from exhunt.analysis.verdict import host_stage
from exhunt.model import Finding, FindingStage, Level, RuleInfo, Stage

AUG = datetime(2021, 8, 13, 9, 0, tzinfo=UTC)
PROXYSHELL = RuleInfo("PS-X", "ProxyShell SSRF answered", Level.CRITICAL, FindingStage.EXPLOIT,
                      cves=("CVE-2021-34473",))
SHELL = RuleInfo("WS-X", "web shell answered", Level.HIGH, FindingStage.POST)


def finding(rule: RuleInfo, moment: datetime = AUG) -> Finding:
    return Finding("EXCH", rule, moment, "C:\\inetpub\\logs\\LogFiles\\W3SVC1\\u_ex210813.log", 7, {})


def test_same_request_is_the_attack_on_cu20_and_an_attempt_after_the_may_su() -> None:
    cu20 = [BuildSeen("15.1.2242.4", datetime(2021, 7, 1, tzinfo=UTC), AUG)]
    may_su = [BuildSeen("15.1.2242.10", datetime(2021, 7, 1, tzinfo=UTC), AUG)]
    assert host_stage([finding(PROXYSHELL)], True, cu20)[0] is Stage.EXPLOITED
    stage, reasons = host_stage([finding(PROXYSHELL)], True, may_su)
    assert stage is Stage.PROBED
    assert "build 15.1.2242.10 had the fix" in reasons[0]
    (chain,) = chains([finding(PROXYSHELL)], may_su)
    assert (chain.chain, chain.exposed, chain.build, chain.open_cves) == ("proxyshell", False, "15.1.2242.10", ())
    (chain,) = chains([finding(PROXYSHELL)], cu20)
    assert chain.exposed is True and chain.open_cves == ("CVE-2021-34473", "CVE-2021-34523", "CVE-2021-31207")


def test_findings_without_cves_are_not_capped_and_unknown_builds_are_not_guessed() -> None:
    may_su = [BuildSeen("15.1.2242.10", None, None)]
    assert host_stage([finding(SHELL)], True, may_su)[0] is Stage.COMPROMISED
    assert host_stage([finding(PROXYSHELL)], True, [])[0] is Stage.EXPLOITED
    (chain,) = chains([finding(PROXYSHELL)], [BuildSeen("15.1.9999.1", None, None)])
    assert chain.exposed is None and "could not be assessed" in chain.summary


def test_build_at_picks_the_build_running_at_the_time() -> None:
    builds = [BuildSeen("15.1.2242.4", datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 5, 20, tzinfo=UTC)),
              BuildSeen("15.1.2242.10", datetime(2021, 5, 21, tzinfo=UTC), AUG)]
    assert build_at(datetime(2021, 4, 1, tzinfo=UTC), builds) == "15.1.2242.4"
    assert build_at(AUG, builds) == "15.1.2242.10"
    assert build_at(datetime(2021, 1, 1, tzinfo=UTC), builds) == "15.1.2242.4"  # before any log: earliest
    assert build_at(AUG, []) is None

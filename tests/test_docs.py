"""The README documents every shipped rule and every diagnostic code."""

from __future__ import annotations

from pathlib import Path

from exhunt.diagnostics import CODES
from exhunt.engine.rules import shipped_rules

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_rule() -> None:
    missing = [info.id for info in shipped_rules().infos if f"| {info.id} |" not in README]
    assert not missing


def test_readme_lists_every_diagnostic_code() -> None:
    missing = [code for code in CODES if f"| `{code}` | {CODES[code][0]} |" not in README]
    assert not missing

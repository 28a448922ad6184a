"""Shared test helpers: where the third-party samples live (read in place, never copied)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLES = SHARED / "samples"


@pytest.fixture
def samples() -> Path:
    """``../shared/samples``; tests that need it are skipped when it is absent."""
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples is not present")
    return SAMPLES


def pytest_configure(config: pytest.Config) -> None:
    """Rule forms are cached in a folder of the test run's own, never in the user's cache folder."""
    os.environ["EXHUNT_CACHE_DIR"] = tempfile.mkdtemp(prefix="exhunt-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.pop("EXHUNT_CACHE_DIR", ""), ignore_errors=True)

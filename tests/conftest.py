"""Shared test fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = ROOT.parent / "shared" / "benchmarks"
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def shared_benchmarks() -> Path:
    """Path to ../shared/benchmarks; skips the test when the folder is absent."""
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip(f"shared benchmarks not found at {SHARED_BENCHMARKS} (tests on real data skipped)")
    return SHARED_BENCHMARKS


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES

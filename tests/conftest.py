"""Shared fixtures: paths to the repository and to the real data in ../shared/data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# generated plans are cached on disk (cyberknife_sim.plan_cache): the tests use a cache of
# their own, shared by this session's tests and subprocesses, not the user's
os.environ.setdefault("CKSIM_CACHE_DIR", tempfile.mkdtemp(prefix="cksim-test-cache-"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real CT and traces); the test fails if it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA} (CI puts shared/ beside the repo)")
    return SHARED_DATA

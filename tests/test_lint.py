"""Lint as a test, so CI enforces it: ruff's rules from pyproject.toml, mccabe ≤ 15 included."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


def _ruff() -> list[str]:
    if importlib.util.find_spec("ruff") is None:  # the dev extra installs it
        pytest.fail("ruff is not installed (pip install -e '.[dev]')")
    return [sys.executable, "-m", "ruff"]


def test_no_function_is_more_complex_than_15(repo_root):
    proc = subprocess.run([*_ruff(), "check", "--select", "C901", "--config",
                           "lint.mccabe.max-complexity=15", "cyberknife_sim", "benchmarks",
                           "scripts"], cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean(repo_root):
    proc = subprocess.run([*_ruff(), "check", "."], cwd=repo_root, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


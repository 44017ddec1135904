"""The README's Python API example runs as written (extracted from README.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys


def readme_example(repo_root) -> str:
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- python-api-example -->\s*```python\n(.*?)```", text, flags=re.S)
    assert m, "README.md lost its <!-- python-api-example --> block"
    return m.group(1)


def test_readme_python_example_runs(repo_root, tmp_path):
    code = readme_example(repo_root)
    (tmp_path / "scenes").symlink_to(repo_root / "scenes", target_is_directory=True)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    rms = float(re.match(r"RMS ([0-9.]+) mm", lines[0]).group(1))
    out = tmp_path / "runs" / "api-example"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    # what the example printed is what the run folder holds
    assert rms == round(summary["targeting_error_mm"]["rms"], 3)
    assert summary["simulated_s"] > 59.0 and summary["imaging"] == "xray"
    assert "scene.yaml" in summary["outputs"] and "report.html" in summary["outputs"]
    assert len(summary["outputs"]) == len(set(summary["outputs"]))
    assert (out / "scene.yaml").is_file()

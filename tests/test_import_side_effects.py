"""Importing the package changes no global state: no environment variable, no matplotlib
backend, no pyplot.

Each check runs in a fresh interpreter (this test process has long imported everything),
with ``MPLBACKEND`` and ``OMP_WAIT_POLICY`` removed from its environment so that a module
setting either (even with ``setdefault``) is seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MODULES = ("cyberknife_sim", "cyberknife_sim.imaging", "cyberknife_sim.report",
           "cyberknife_sim.simulation", "cyberknife_sim.registration",
           "cyberknife_sim.motion", "cyberknife_sim.tracking", "cyberknife_sim.cli")

THIRD_PARTY_FIRST = ("cv2",)
"""Imported before the baseline is taken: their own import changes the environment, which
this package cannot help (opencv-python's loader prepends its library folder to
``LD_LIBRARY_PATH``)."""

_PROBE = """
import importlib, json, os, sys
import matplotlib
first, modules = sys.argv[1].split(","), sys.argv[2:]
for name in filter(None, first):
    importlib.import_module(name)

def state():
    return {"environ": dict(os.environ),
            "backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),
            "get_backend": matplotlib.get_backend(auto_select=False),
            "pyplot": "matplotlib.pyplot" in sys.modules}

before = state()
changes = []
for name in modules:
    importlib.import_module(name)
    after = state()
    env = {k for k in set(before["environ"]) | set(after["environ"])
           if before["environ"].get(k) != after["environ"].get(k)}
    diff = {key: [before[key], after[key]] for key in ("backend", "get_backend", "pyplot")
            if before[key] != after[key]}
    if env:
        diff["environ"] = {k: [before["environ"].get(k), after["environ"].get(k)]
                           for k in sorted(env)}
    if diff:
        changes.append({"module": name, **diff})
    before = after
print(json.dumps({"changes": changes, "file": sys.modules["cyberknife_sim"].__file__}))
"""


def test_importing_the_package_changes_no_global_state():
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "OMP_WAIT_POLICY")}
    argv = [sys.executable, "-c", _PROBE, ",".join(THIRD_PARTY_FIRST), *MODULES]
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the probe imported this checkout, not some other installed copy
    assert Path(result["file"]).resolve().is_relative_to(root)
    assert result["changes"] == [], "importing changed global state: " + json.dumps(
        result["changes"], indent=1)

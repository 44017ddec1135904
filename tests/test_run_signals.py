"""``cksim run`` stopped by Ctrl-C (SIGINT) or SIGTERM at any point, or by an error in the
loop: one line on stderr, the documented exit code, and the run folder holds what there is
with the reason in ``summary.json``."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cyberknife_sim.cli import main
from cyberknife_sim.errors import CksimError

REPO = Path(__file__).resolve().parents[1]
SCENE = str(REPO / "scenes" / "default.yaml")

# The child runs ``cksim`` through main() like the console script; PRELUDE runs before it.
CHILD = """\
import os, signal, sys
# Ctrl-C as in a terminal: a job started in the background by a non-interactive shell
# inherits SIGINT ignored (POSIX), and cksim rightly keeps it ignored then
signal.signal(signal.SIGINT, signal.default_int_handler)
{prelude}
from cyberknife_sim.cli import main
print("ready", flush=True)
sys.exit(main(sys.argv[1:]))
"""

# Sends the signal to the process itself when the simulation package starts importing
# (part of the run's set-up, after its output folder exists).
SIGNAL_ON_IMPORT = """\
class _Hook:
    def find_spec(self, name, path=None, target=None):
        if name == "cyberknife_sim.simulation":
            os.kill(os.getpid(), signal.{sig})
        return None
sys.meta_path.insert(0, _Hook())
"""

# Sends the signal while the plan and robot are built (set-up, after the imports).
SIGNAL_IN_PLAN = """\
import cyberknife_sim.simulation._robot as _r
_build = _r.build_plan_and_robot
def _hooked(*a, **k):
    os.kill(os.getpid(), signal.{sig})
    return _build(*a, **k)
_r.build_plan_and_robot = _hooked
"""

# Sends the signal while the command's module is imported, before its parser exists.
SIGNAL_WHILE_PARSER_IMPORTS = """\
import importlib
_real = importlib.import_module
def _hooked(name, package=None):
    if name.startswith(".commands."):
        os.kill(os.getpid(), signal.{sig})
    return _real(name, package)
importlib.import_module = _hooked
"""


def start(argv, prelude: str = "") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(prelude=prelude), *argv],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert "Traceback" not in err, err
    return proc.returncode, err


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def run_argv(out: Path, duration_s: float = 1800.0) -> list[str]:
    return ["run", SCENE, "--out", str(out), "--duration-s", str(duration_s),
            "--imaging", "truth", "--no-plots"]


# ----------------------------------------------------------------------------- start-up


def test_sigint_while_the_command_is_imported_is_one_line_and_130(tmp_path):
    proc = start(run_argv(tmp_path / "out"), SIGNAL_WHILE_PARSER_IMPORTS.format(sig="SIGINT"))
    code, err = finish(proc)
    assert code == 130
    assert err.splitlines() == ["cksim run: interrupted (SIGINT, Ctrl-C)"]
    assert not (tmp_path / "out").exists()


def test_sigint_shortly_after_start(tmp_path):
    """Whenever it lands in start-up (imports, checks, set-up): 130, one line, and once the
    output folder exists a summary that says why."""
    out = tmp_path / "out"
    proc = start(run_argv(out))
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130
    assert len(err.splitlines()) == 1 and "(SIGINT, Ctrl-C)" in err
    if out.exists():
        assert summary(out)["stopped_early"].startswith("interrupted")


@pytest.mark.parametrize(("sig", "prelude", "code", "reason"), [
    ("SIGINT", SIGNAL_ON_IMPORT, 130, "interrupted during set-up (SIGINT, Ctrl-C)"),
    ("SIGTERM", SIGNAL_ON_IMPORT, 143, "terminated during set-up (SIGTERM)"),
    ("SIGTERM", SIGNAL_IN_PLAN, 143, "terminated during set-up (SIGTERM)"),
])
def test_signal_during_set_up_writes_the_reason(sig, prelude, code, reason, tmp_path):
    out = tmp_path / "out"
    proc = start(run_argv(out), prelude.format(sig=sig))
    got, err = finish(proc)
    assert got == code
    assert err.splitlines() == [f"cksim run: {reason}; wrote {out / 'summary.json'}"]
    s = summary(out)
    assert s["stopped_early"] == reason and s["simulated_s"] == 0.0
    assert s["outputs"] == ["scene.yaml", "summary.json"]
    assert "duration_s: 1800" in (out / "scene.yaml").read_text()


# ----------------------------------------------------------------------------- the loop


class StderrReader:
    """Collects a child's stderr lines in a thread; :meth:`wait_for` a line."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, needle: str, timeout: float) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(needle in ln for ln in self.lines), timeout)
        assert ok, f"no {needle!r} on stderr within {timeout} s: {self.lines}"

    def text(self) -> str:
        self._thread.join(10.0)
        return "".join(self.lines)


@pytest.mark.parametrize(("sig", "code", "reason"), [
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    (signal.SIGINT, 130, "interrupted (SIGINT, Ctrl-C)"),
])
def test_signal_in_the_loop_writes_the_steps_done(sig, code, reason, tmp_path):
    out = tmp_path / "out"
    # the plan's own 27,000 MU (29 min) so that the loop is still running when the signal
    # comes (the optimised plan's 5 min take a few wall seconds with --imaging truth)
    scene = yaml.safe_load(Path(SCENE).read_text(encoding="utf-8"))
    scene["dose"] = {"optimize_mu": False}
    long_scene = tmp_path / "long.yaml"
    long_scene.write_text(yaml.safe_dump(scene), encoding="utf-8")
    argv = run_argv(out)
    argv[1] = str(long_scene)
    proc = start(argv)
    stderr = StderrReader(proc.stderr)
    try:
        # the first progress line comes after the loop's first step (set-up done)
        stderr.wait_for("cksim run: simulating 1800 s", timeout=40.0)
        time.sleep(1.0)
        proc.send_signal(sig)
        got = proc.wait(60.0)
    finally:
        proc.kill()
    err = stderr.text()
    assert "Traceback" not in err, err
    assert got == code, err
    last = err.splitlines()[-1]
    assert last.startswith("cksim run: stopped early after ") and last.endswith(reason)
    s = summary(out)
    assert s["stopped_early"] == reason
    assert 0 < s["simulated_s"] < 1800
    stops = [e for e in s["events"] if e["kind"] == "stopped"]
    assert [e["reason"] for e in stops] == [reason]
    with open(out / "timeseries.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == s["n_steps"] > 0
    assert float(rows[-1]["time_s"]) == pytest.approx(stops[0]["time_s"], abs=0.1)


# ----------------------------------------------------------------------------- errors in the loop


@pytest.mark.parametrize(("exc", "code", "words"), [
    (CksimError("beam 3: unreachable (outside the workspace)"), 2,
     "cksim run: error: beam 3: unreachable (outside the workspace) (stopped after "),
    (ZeroDivisionError("float division by zero"), 1,
     "cksim run: stopped early after "),
])
def test_error_in_the_loop_is_one_line(exc, code, words, monkeypatch, tmp_path, capsys):
    from cyberknife_sim.simulation import TreatmentLoop

    real = TreatmentLoop.command_robot

    def failing(self, i):
        if i == 100:
            raise exc
        return real(self, i)

    monkeypatch.setattr(TreatmentLoop, "command_robot", failing)
    got = main(["run", SCENE, "--out", str(tmp_path), "--duration-s", "30", "--imaging",
                "truth", "--no-plots", "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert got == code
    assert len(err) == 1 and err[0].startswith(words), err
    s = summary(tmp_path)
    assert s["stopped_early"] == f"{type(exc).__name__}: {exc}"
    assert s["n_steps"] == 100
    if code == 1:
        assert err[0].endswith(f"(traceback in {tmp_path / 'error.txt'})")
        assert "ZeroDivisionError" in (tmp_path / "error.txt").read_text()

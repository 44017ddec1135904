"""Options of ``cksim`` commands: negative values, bounds, output paths checked before any
work, one-line errors (newlines escaped, warnings held back), progress lines."""

from __future__ import annotations

import io
import json
import sys
import warnings

import numpy as np
import pytest

from cyberknife_sim.cli import main
from cyberknife_sim.commands import _args
from cyberknife_sim.commands.run import Progress, progress_mode
from cyberknife_sim.errors import InputError, SceneError

SCENE = "scenes/default.yaml"


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors exit through the parser
        return int(exc.code)


def one_error_line(argv, capsys, cmd) -> str:
    code = _exit_code(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"cksim {cmd}: error:"), err
    return lines[0]


@pytest.fixture(scope="module")
def phantom_scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "phantom.yaml"
    path.write_text("room:\n  imaging:\n    binning: 8\n")
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Make every command's first real work fail the test: checks must come before it."""
    import cyberknife_sim.anatomy as anatomy
    import cyberknife_sim.robot as robot
    import cyberknife_sim.simulation as simulation

    def forbidden(*a, **k):
        raise AssertionError("the command started working before checking its options")

    for mod, name in ((simulation, "simulate"), (anatomy, "load_patient"),
                      (anatomy, "make_phantom"), (robot, "RobotWorld")):
        monkeypatch.setattr(mod, name, forbidden)


# ----------------------------------------------------------------------------- negative values


@pytest.mark.parametrize("cmd", ["drr", "xray"])
def test_negative_pose_is_accepted(cmd, phantom_scene, tmp_path, capsys):
    pose = [-1.5, 0.5, -2.0, 1.0, -1.0, 2.0]
    argv = [cmd, "--scene", str(phantom_scene), "--out", str(tmp_path), "--pose",
            ",".join(f"{v:g}" for v in pose)]
    assert main(argv) == 0, capsys.readouterr().err
    geometry = json.loads((tmp_path / "geometry.json").read_text())
    assert geometry["pose"] == pose
    assert np.load(tmp_path / "A.npy").max() > 1.0


def test_negative_target_reaches_register(phantom_scene, tmp_path, capsys):
    """``--target -1,2`` used to fail in argparse ("expected one argument"); now it reaches
    the command, which names what is wrong with the value."""
    assert main(["drr", "--scene", str(phantom_scene), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    line = one_error_line(["register", "--scene", str(phantom_scene), "--images",
                           str(tmp_path / "A.npy"), str(tmp_path / "B.npy"),
                           "--target", "-1,2"], capsys, "register")
    assert "--target '-1,2': expected three numbers" in line


def test_negative_number_with_exponent_reaches_the_check(capsys, no_work):
    line = one_error_line(["run", SCENE, "--out", "x", "--duration-s", "-1e5"], capsys, "run")
    assert "--duration-s must be > 0" in line


def test_attach_negative_values():
    values, every = {"--pose", "--seed", "-s"}, {"--pose", "--seed", "-s", "--quiet", "--po2"}
    f = _args.attach_negative_values
    assert f(["drr", "--pose", "-1,2"], values, every) == ["drr", "--pose=-1,2"]
    assert f(["--pose", "-.5e3,1"], values, every) == ["--pose=-.5e3,1"]
    assert f(["--pose", "-inf,0"], values, every) == ["--pose=-inf,0"]
    assert f(["-s", "-3"], values, every) == ["-s-3"]
    assert f(["--pose", "--quiet"], values, every) == ["--pose", "--quiet"]
    assert f(["--quiet", "-1"], values, every) == ["--quiet", "-1"]  # takes no value
    assert f(["--pos", "-1"], values, every) == ["--pos=-1"]  # argparse's abbreviation
    assert f(["--po", "-1"], values, every) == ["--po", "-1"]  # ambiguous: left to argparse
    assert f(["--", "--pose", "-1"], values, every) == ["--", "--pose", "-1"]


# ----------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(("pose", "words"), [
    ("1e308,0,0,0,0,0", "tx = 1e+308 is outside -1000..1000"),
    ("0,0,-1001,0,0,0", "tz = -1001 is outside"),
    ("0,0,0,0,0,-190", "rz = -190 is outside -180..180"),
    ("0,0,0,nan,0,0", "finite"),
])
@pytest.mark.parametrize("cmd", ["drr", "xray"])
def test_pose_out_of_range(cmd, pose, words, phantom_scene, tmp_path, capsys, no_work):
    line = one_error_line([cmd, "--scene", str(phantom_scene), "--out", str(tmp_path / "o"),
                           "--pose", pose], capsys, cmd)
    assert words in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("argv", "words"), [
    (["--duration-s", "inf"], "--duration-s must be a finite number"),
    (["--duration-s", "nan"], "--duration-s must be a finite number"),
    (["--duration-s", "1e308"], "--duration-s: simulation.duration_s: Input should be less "
     "than or equal to 36000"),
    (["--duration-s", "36001"], "less than or equal to 36000 (got 36001.0)"),
    (["--duration-s", "0.01"], "time_step_s must not exceed duration_s"),
    (["--seed", str(2**64)], f"--seed must be 0..{2**63 - 1}"),
    (["--seed", "-1"], "--seed must be 0.."),
    (["--video", "--video-every-s", "inf"], "--video-every-s must be a finite number"),
])
def test_run_overrides_out_of_range_before_any_work(argv, words, tmp_path, capsys, no_work):
    line = one_error_line(["run", SCENE, "--out", str(tmp_path / "o"), *argv], capsys, "run")
    assert words in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [["xray", "--seed", str(2**64)],
                                  ["phantom", "--seed", str(2**64)]])
def test_seed_beyond_the_scene_range(argv, phantom_scene, tmp_path, capsys, no_work):
    out = str(tmp_path / ("o.nii.gz" if argv[0] == "phantom" else "o"))
    line = one_error_line([*argv, "--scene", str(phantom_scene), "--out", out], capsys, argv[0])
    assert "--seed must be 0..9223372036854775807" in line


# ----------------------------------------------------------------------------- --out


def _bad_outs(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return {
        "empty": ("", "empty path"),
        "proc": ("/proc/cksim-test/out", "/proc is a virtual file system"),
        "under_a_file": (str(blocker / "sub" / "out"), "is a file, not a folder"),
        "long_name": (str(tmp_path / ("n" * 300)), "bytes long, more than the 255"),
    }


def _argv(cmd, out, scene):
    if cmd == "run":
        return ["run", SCENE, "--out", out, "--imaging", "truth"]
    if cmd in ("drr", "xray"):
        return [cmd, "--scene", str(scene), "--out", out]
    if cmd == "view":
        return ["view", str(scene), "--out", out + (".gif" if out else "")]
    return ["phantom", "--scene", str(scene), "--out", out + (".nii.gz" if out else "")]


@pytest.mark.parametrize("kind", ["empty", "proc", "under_a_file", "long_name"])
@pytest.mark.parametrize("cmd", ["run", "drr", "xray", "view", "phantom"])
def test_out_is_checked_before_any_work(cmd, kind, phantom_scene, tmp_path, capsys, no_work):
    out, words = _bad_outs(tmp_path)[kind]
    line = one_error_line(_argv(cmd, out, phantom_scene), capsys, cmd)
    assert "--out" in line and words in line


def test_out_that_is_a_file_or_a_folder(tmp_path, capsys, no_work):
    f = tmp_path / "f.nii.gz"
    f.write_text("x")
    line = one_error_line(["run", SCENE, "--out", str(f)], capsys, "run")
    assert "exists and is not a folder" in line
    line = one_error_line(["phantom", "--out", str(tmp_path)], capsys, "phantom")
    assert "expected a file name ending in .nii.gz" in line
    (tmp_path / "d.nii.gz").mkdir()
    line = one_error_line(["phantom", "--out", str(tmp_path / "d.nii.gz")], capsys, "phantom")
    assert "is a folder" in line
    line = one_error_line(["phantom", "--out", str(tmp_path / "ok.nii.gz"), "--labels", ""],
                          capsys, "phantom")
    assert "--labels '': empty path" in line


def test_check_out_dir_creates_the_folder(tmp_path):
    out = _args.check_out_dir(tmp_path / "a" / "b")
    assert out.is_dir() and not any(out.iterdir())  # the write probe is removed
    f = _args.check_out_file(tmp_path / "c" / "x.gif", suffixes=(".gif",))
    assert f.parent.is_dir() and not f.exists()


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root may write anywhere")
def test_read_only_out_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InputError, match="cannot"):
            _args.check_out_dir(ro / "x")
        with pytest.raises(InputError, match="cannot write"):
            _args.check_out_dir(ro)
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------------- one line


def test_newline_in_a_file_name_does_not_split_the_line(tmp_path, capsys):
    line = one_error_line(["run", str(tmp_path / "no\nsuch.yaml"), "--out", "x"], capsys, "run")
    assert "no\\nsuch.yaml: scene file not found" in line


def test_scene_error_is_one_line_per_problem_each_escaped(monkeypatch, capsys):
    import cyberknife_sim.commands.validate as validate

    def bad(args):
        raise SceneError(["a\nb.yaml: x: bad", "a\u2028b.yaml: y: bad"])

    monkeypatch.setattr(validate, "run", bad)
    assert main(["validate", "whatever.yaml"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["cksim validate: error: a\\nb.yaml: x: bad",
                     "cksim validate: error: a\\u2028b.yaml: y: bad"]


@pytest.fixture
def warnings_on_stderr():
    """Warnings shown on stderr as outside pytest (which records them instead)."""

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def test_runtime_warnings_do_not_precede_the_error(monkeypatch, capsys, warnings_on_stderr):
    import cyberknife_sim.commands.drr as drr

    def noisy(args):
        with np.errstate(all="warn"):
            np.log(np.zeros(3))
        warnings.warn("something odd\nacross lines", RuntimeWarning, stacklevel=1)
        raise InputError("the real problem")

    monkeypatch.setattr(drr, "run", noisy)
    err = one_error_line(["drr", "--scene", "s.yaml", "--out", "o"], capsys, "drr")
    assert err == "cksim drr: error: the real problem"


def test_warnings_of_a_successful_command_are_one_line(monkeypatch, capsys,
                                                      warnings_on_stderr):
    import cyberknife_sim.commands.drr as drr

    def noisy(args):
        with np.errstate(all="warn"):
            np.log(np.zeros(3))
            np.zeros(2) / np.zeros(2)
        return 0

    monkeypatch.setattr(drr, "run", noisy)
    assert main(["drr", "--scene", "s.yaml", "--out", "o"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cksim drr: warning: RuntimeWarning: divide by zero")
    assert lines[0].endswith("(and 1 more)")


def test_one_line_escapes_every_line_break():
    text = "a\nb\rc\x0bd\x0ce\x1cf\x85g\u2028h\u2029i\tj μ"
    out = _args.one_line(text)
    assert len(out.splitlines()) == 1 and out.endswith("μ")
    assert "\\n" in out and "\\u2028" in out


# ----------------------------------------------------------------------------- progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_lines_by_wall_time_and_by_simulated_time():
    clock, stream = Clock(), io.StringIO()
    p = Progress("lines", time_step_s=0.1, stream=stream, clock=clock)
    total = 18000  # 1800 s
    p(0, total)
    clock.t = 0.5
    p(256, total)  # 25.6 s simulated, 0.5 s wall: nothing
    clock.t = 1.5
    p(700, total)  # 70 s simulated in 1.5 s: a line (>= 60 s simulated)
    clock.t = 2.0
    p(1300, total)  # 60 s more but only 0.5 s of wall since the last: nothing
    clock.t = 12.0
    p(1400, total)  # 10.5 s of wall: a line
    lines = stream.getvalue().splitlines()
    assert lines == ["cksim run: simulating 1800 s (18000 steps)",
                     "cksim run: 70/1800 s simulated (4 %), RTF 46.7",
                     "cksim run: 140/1800 s simulated (8 %), RTF 11.7"]
    assert p.started and p.steps_done == 1400


def test_progress_mode():
    from argparse import Namespace

    assert progress_mode(Namespace(quiet=False, progress=True), tty=True) == "bar"
    assert progress_mode(Namespace(quiet=False, progress=True), tty=False) == "lines"
    assert progress_mode(Namespace(quiet=False, progress=False), tty=True) is None
    assert progress_mode(Namespace(quiet=True, progress=True), tty=False) is None


@pytest.mark.parametrize(("flags", "expect_lines"), [([], True), (["--no-progress"], False),
                                                      (["--quiet"], False)])
def test_run_progress_lines_when_not_a_terminal(flags, expect_lines, tmp_path, capsys):
    code = main(["run", SCENE, "--out", str(tmp_path), "--duration-s", "10", "--imaging",
                 "truth", "--no-plots", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert ("cksim run: simulating 10 s (260 steps)" in captured.err) == expect_lines
    assert (captured.out == "") == ("--quiet" in flags)

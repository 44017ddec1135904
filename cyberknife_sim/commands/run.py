"""``cksim run SCENE --out DIR [--seed N] [--duration-s S]``: simulate one treatment.

Every option is checked, the scene loaded and the overrides validated, and the output folder
created, before any simulation work. From then on a run that stops — an interlock, an error
in the loop, Ctrl-C (SIGINT) or SIGTERM, at any point — writes what it has, with the reason
in ``summary.json``'s ``stopped_early``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CksimError, InputError
from ..scene import load_scene
from ._args import Interrupted, check_number, check_out_dir, check_seed, one_line

EPILOG = """\
outputs (in DIR):
  scene.yaml       the resolved scene (cksim run DIR/scene.yaml reproduces the run)
  summary.json     metrics; "stopped_early" is null, or why the run stopped early
  timeseries.csv   one row per simulated step done; beams.csv one row per beam
  *.png, report.html  plots and report (not with --no-plots)
  robot.mp4        with --video: the robot tracking (robot.gif where MP4 cannot be written)
A run stopped during set-up (before the first step) writes only scene.yaml and
summary.json, with "simulated_s": 0 and e.g. "stopped_early": "interrupted during set-up
(SIGINT, Ctrl-C)". An unexpected error also writes its traceback to error.txt.

stopping: Ctrl-C (SIGINT) or SIGTERM stops the loop after the current step and the outputs
are written; a second signal while writing is noted, a third quits without finishing.

progress: a bar on a terminal; otherwise a line on stderr every 10 s of wall time or 60 s
of simulated time ("cksim run: 600/1800 s simulated (33 %), RTF 45"). --no-progress or
--quiet turn it off.

exit codes:
  0    done (the plan delivered or the duration reached)
  1    stopped early by an interlock, or by an unexpected error in set-up or the loop
       (outputs written so far; one line on stderr says why; traceback in error.txt)
  2    bad input: an option, the scene, --out (checked before any work); or a user error
       raised while running (e.g. an unreachable beam), outputs written so far
  130  interrupted by SIGINT (Ctrl-C); 143 stopped by SIGTERM (outputs written)
"""

_LOOP_CTRL_C = "interrupted (Ctrl-C)"
"""The reason the simulation loop records when a KeyboardInterrupt stops it."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``run`` sub-command."""
    p = sub.add_parser(
        "run", help="simulate a whole treatment; write summary.json, timeseries.csv, report",
        description="Simulate one treatment of SCENE closed loop (motion truth, markers, "
        "correlation and prediction, X-ray pairs + registration, robot) and write "
        "summary.json, timeseries.csv, beams.csv, PNG plots and a self-contained report.html "
        "into DIR. A run that stops early writes what it has and why.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", help="scene YAML file")
    p.add_argument("--out", required=True,
                   help="output directory (created, and checked writable, before the run)")
    p.add_argument("--seed", type=int, default=None,
                   help="override simulation.seed (0..2**63-1)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="override simulation.duration_s (s, at most 36000); the run also "
                   "ends when the plan is delivered")
    p.add_argument("--imaging", choices=("xray", "truth"), default="xray",
                   help="xray: live X-ray pair + 2D/3D registration (default); truth: ideal "
                   "registration (ablation)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots and report")
    p.add_argument("--video", action="store_true",
                   help="also write robot.mp4 (robot.gif where OpenCV cannot write MP4): "
                   "the robot tracking, rendered headlessly, with the beam axis, the target, "
                   "a time stamp and a beam's-eye view of the error")
    p.add_argument("--video-every-s", type=float, default=1.0,
                   help="simulated seconds between video frames (default 1)")
    p.add_argument("--video-fps", type=float, default=10.0,
                   help="video frames per second, 0 < FPS <= 120 (default 10: with "
                   "--video-every-s 1, ten times real time)")
    p.add_argument("--video-size", default="640x480", metavar="WIDTHxHEIGHT",
                   help="video frame size in pixels, even numbers 64..4096 (default 640x480)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show progress on stderr: a bar on a terminal, otherwise a line "
                   "every 10 s of wall time or 60 s simulated (default: on)")
    p.add_argument("--quiet", action="store_true", help="no progress and no summary lines")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------ signals


class RunSignals:
    """SIGINT and SIGTERM, while a run is in progress, raise :class:`Interrupted` (a
    ``KeyboardInterrupt``) once, so the loop's Ctrl-C path stops the run cleanly for both.
    Later signals, and any signal once :meth:`defer` was called (outputs being written),
    are noted and answered with a line on stderr; the third one raises anyway."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.received: str | None = None
        self.count = 0
        self.deferring = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> RunSignals:
        for name in self.SIGNALS:
            num = getattr(signal, name)
            with contextlib.suppress(ValueError):  # not the main thread: leave them alone
                self._previous[num] = signal.signal(num, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for num, handler in self._previous.items():
            signal.signal(num, handler)

    def defer(self) -> None:
        """From now on, note signals instead of raising (until the third)."""
        self.deferring = True

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        self.received = self.received or name
        if not self.deferring or self.count >= 3:
            self.deferring = True
            raise Interrupted(name)
        print(f"cksim run: {name} received; writing the outputs (send it again to quit "
              "without them)", file=sys.stderr, flush=True)

    @property
    def interrupt(self) -> Interrupted | None:
        """The first signal received, as an exception (None if none came)."""
        return Interrupted(self.received) if self.received else None


# ------------------------------------------------------------------------------ progress


class Progress:
    """The loop's progress callback: a tqdm bar, lines on stderr, or nothing.

    Lines (``mode="lines"``) come when ``every_wall_s`` of wall time or ``every_sim_s`` of
    simulated time have passed since the last one (at most one a second). Also records
    whether the loop has started (the first call comes after its first step).
    """

    def __init__(self, mode: str | None, *, time_step_s: float, every_wall_s: float = 10.0,
                 every_sim_s: float = 60.0, stream=None, clock=time.monotonic) -> None:
        self.mode = mode
        self.dt = time_step_s
        self.every_wall_s, self.every_sim_s = every_wall_s, every_sim_s
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.started = False
        self.steps_done = 0
        self._bar = None
        self._t0 = self._last_wall = 0.0
        self._last_sim = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        self.steps_done = done
        if not self.started:
            self.started = True
            self._t0 = self._last_wall = now
            if self.mode == "lines":
                self._say(f"simulating {total * self.dt:.0f} s ({total} steps)")
        if self.mode == "bar":
            self._update_bar(done, total)
        elif self.mode == "lines":
            sim = done * self.dt
            wall_since = now - self._last_wall
            if wall_since >= self.every_wall_s or (sim - self._last_sim >= self.every_sim_s
                                                   and wall_since >= 1.0):
                rtf = sim / (now - self._t0) if now > self._t0 else float("inf")
                self._say(f"{sim:.0f}/{total * self.dt:.0f} s simulated "
                          f"({100 * done / max(total, 1):.0f} %), RTF {rtf:.1f}")
                self._last_wall, self._last_sim = now, sim

    def _update_bar(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="step", desc="simulating", leave=False)
        self._bar.update(done - self._bar.n)

    def _say(self, text: str) -> None:
        print(f"cksim run: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        """Close the bar (if any)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_mode(args: argparse.Namespace, *, tty: bool | None = None) -> str | None:
    """``"bar"`` on a terminal, ``"lines"`` otherwise, None with --quiet or --no-progress."""
    if args.quiet or not args.progress:
        return None
    return "bar" if (sys.stderr.isatty() if tty is None else tty) else "lines"


# ------------------------------------------------------------------------------ checks


def check_options(args: argparse.Namespace) -> None:
    """The numeric options, before anything is loaded (one line naming the option)."""
    check_seed(args.seed)
    check_number(args.duration_s, "--duration-s", low=0.0, low_open=True)
    if args.video:
        check_number(args.video_every_s, "--video-every-s", low=0.0, low_open=True,
                     high=36000.0)
        check_number(args.video_fps, "--video-fps", low=0.0, low_open=True, high=120.0)
        args.video_size = parse_video_size(args.video_size)


def parse_video_size(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"640x480"`` → ``(640, 480)``: two even integers 64..4096 (InputError otherwise)."""
    if isinstance(text, tuple):
        return text
    parts = str(text).lower().split("x")
    try:
        width, height = (int(v) for v in parts)
    except ValueError:
        raise InputError(f"--video-size must be WIDTHxHEIGHT in pixels, e.g. 640x480 "
                         f"(got {text!r})") from None
    if not all(64 <= v <= 4096 and v % 2 == 0 for v in (width, height)):
        raise InputError(f"--video-size: width and height must be even numbers 64..4096 "
                         f"(got {width}x{height})")
    return width, height


def resolve_overrides(scene, args: argparse.Namespace):
    """The scene with ``--seed``/``--duration-s`` applied, validated by the scene model
    (ranges, ``time_step_s <= duration_s``) one option at a time so that the message names
    the option; the same result as :func:`cyberknife_sim.simulation.resolve_scene`."""
    from ..scene import scene_from_dict

    if args.seed is None and args.duration_s is None:
        return scene
    data = scene.model_dump(mode="json")
    for option, key, value in (("--seed", "seed", args.seed),
                               ("--duration-s", "duration_s", args.duration_s)):
        if value is not None:
            data["simulation"][key] = value
            scene_from_dict(data, origin=option)  # SceneError: "--seed: simulation.seed: ..."
    return scene_from_dict(data, origin="--seed/--duration-s").model_copy(
        update={"source": scene.source})


# ------------------------------------------------------------------------------ early stops


def write_setup_stop(out: Path, scene, args: argparse.Namespace, reason: str, *,
                     simulated_s: float = 0.0, error: BaseException | None = None) -> Path:
    """What a run stopped before the loop's record exists writes: ``scene.yaml`` and a
    ``summary.json`` with ``stopped_early`` (and ``error.txt`` with a traceback)."""
    from ..scene import scene_to_yaml

    outputs = ["scene.yaml", "summary.json"]
    (out / "scene.yaml").write_text(scene_to_yaml(scene), encoding="utf-8")
    if error is not None:
        (out / "error.txt").write_text("".join(traceback.format_exception(error)),
                                       encoding="utf-8")
        outputs.append("error.txt")
    sim = scene.simulation
    summary = {
        "scene": scene.name, "scene_file": str(scene.source) if scene.source else None,
        "seed": int(sim.seed), "tracking_mode": scene.tracking.mode, "imaging": args.imaging,
        "duration_requested_s": float(sim.duration_s), "simulated_s": float(simulated_s),
        "stopped_early": reason, "plan_complete": False,
        "targeting_error_mm": {"rms": None, "mean": None, "p95": None, "max": None},
        "outputs": sorted(outputs),
    }
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return path


def with_signal_reason(result, received: str | None) -> None:
    """Say which signal stopped the loop (it records every KeyboardInterrupt as Ctrl-C):
    ``result.summary`` (frozen: replaced) and the ``stopped`` event, in place."""
    s = result.summary
    if received is None or s.stopped_early != _LOOP_CTRL_C:
        return
    reason = Interrupted(received).reason
    for events in (result.record.events, s.events):
        for ev in events:
            if ev.get("kind") == "stopped" and ev.get("reason") == _LOOP_CTRL_C:
                ev["reason"] = reason
    result.summary = replace(s, stopped_early=reason)


def _stopped_line(s, out: Path, sig: RunSignals, error) -> tuple[str, int]:
    """(the one stderr line, the exit code) of a run that stopped early."""
    where = f"after {s.simulated_s:.1f} s of {s.duration_requested_s:g} s"
    cause = None if error is None else error.__cause__
    if sig.interrupt is not None and s.stopped_early == sig.interrupt.reason:
        return f"cksim run: stopped early {where}: {s.stopped_early}", sig.interrupt.exit_code
    if isinstance(cause, CksimError):
        return (f"cksim run: error: {cause} (stopped {where}; outputs in {out})", 2)
    if cause is not None:
        (out / "error.txt").write_text("".join(traceback.format_exception(cause)),
                                       encoding="utf-8")
        return (f"cksim run: stopped early {where}: {s.stopped_early} (traceback in "
                f"{out / 'error.txt'})", 1)
    return f"cksim run: stopped early {where}: {s.stopped_early}", 1


# ------------------------------------------------------------------------------ the command


def run(args: argparse.Namespace) -> int:
    """Check everything, simulate, write the outputs; the exit code of the run's EPILOG."""
    with RunSignals() as sig:
        check_options(args)
        scene = load_scene(args.scene)
        resolved = resolve_overrides(scene, args)
        out = check_out_dir(args.out)
        return _simulate_and_write(args, scene, resolved, out, sig)


def _simulate(args, scene, resolved, out: Path, sig: RunSignals, progress: Progress):
    """(result, StoppedEarly or None) — or an exit code when the run stopped before the
    loop's record existed (set-up), after writing what there is."""
    try:
        from ..simulation import StoppedEarly, simulate

        try:
            result = simulate(scene, seed=args.seed, duration_s=args.duration_s,
                              imaging=args.imaging, progress=progress,
                              video_every_s=args.video_every_s if args.video else None)
            return result, None
        except StoppedEarly as exc:
            return exc.result, exc
    except KeyboardInterrupt as exc:
        sig.defer()
        stop = exc if isinstance(exc, Interrupted) else Interrupted("SIGINT")
        reason = stop.describe("after the loop, before its record was summarized"
                               if progress.started else "during set-up")
        path = write_setup_stop(out, resolved, args, reason,
                                simulated_s=progress.steps_done * resolved.simulation.time_step_s)
        print(f"cksim run: {reason}; wrote {path}", file=sys.stderr)
        return stop.exit_code
    except CksimError as exc:
        sig.defer()
        write_setup_stop(out, resolved, args, f"error during set-up: {one_line(exc)}")
        raise
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback goes into the run folder
        sig.defer()
        write_setup_stop(out, resolved, args, f"error during set-up: "
                         f"{exc.__class__.__name__}: {one_line(exc)}", error=exc)
        print(f"cksim run: internal error during set-up: {exc.__class__.__name__}: "
              f"{one_line(exc)} (traceback in {out / 'error.txt'})", file=sys.stderr)
        return 1


def _simulate_and_write(args, scene, resolved, out: Path, sig: RunSignals) -> int:
    progress = Progress(progress_mode(args), time_step_s=resolved.simulation.time_step_s)
    try:
        got = _simulate(args, scene, resolved, out, sig, progress)
    finally:
        progress.close()
    if isinstance(got, int):
        return got
    result, error = got
    sig.defer()  # from here on a signal is noted: the outputs are written first
    from ..simulation import write_run

    with_signal_reason(result, sig.received)
    try:
        files = write_run(out, result, plots=not args.no_plots, video=args.video,
                          **({"video_size": args.video_size, "video_fps": args.video_fps}
                             if args.video else {}))
    except OSError as exc:
        raise InputError(f"--out {out}: writing the outputs failed ({exc})") from None
    if not args.quiet:
        print_summary(result.summary, files)
    s = result.summary
    if s.stopped_early:
        line, code = _stopped_line(s, out, sig, error)
        print(one_line(line), file=sys.stderr)
        return code
    if sig.interrupt is not None:  # a signal came while the outputs were written
        print(f"cksim run: {sig.interrupt.reason} while writing; the outputs are complete",
              file=sys.stderr)
        return sig.interrupt.exit_code
    return 0


def print_summary(s, files: dict[str, Path]) -> None:
    """The few lines on stdout that sum up a run."""
    te = s.targeting_error_mm
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{s.scene}: tracking {s.tracking_mode}, {s.simulated_s:.0f} s simulated, "
          f"{s.beams_completed}/{s.beams_total} beams, beam hold {s.beam_hold_s:.1f} s")
    done = s.plan_delivery_s
    print(f"plan: {s.mu_planned:.0f} MU, {s.plan_beam_on_s:.0f} s beam-on; "
          + (f"delivered in {done:.0f} s ({done / 60:.1f} min)" if done is not None
             else f"not completed ({s.mu_delivered:.0f} MU delivered)"))
    print(f"targeting error over beam-on time: RMS {fmt(te['rms'])} mm, "
          f"p95 {fmt(te['p95'])} mm, max {fmt(te['max'])} mm")
    print(f"real-time factor {fmt(s.realtime_factor_with_setup)} with set-up "
          f"({s.setup_wall_s:.1f} s), {fmt(s.realtime_factor)} loop only (imaging events "
          f"{s.imaging_wall_s:.1f} s of {s.loop_wall_s:.1f} s)")
    if "video" in files:
        print(f"video: {files['video']}")
    print(f"report: {files.get('report', files['summary'])}")

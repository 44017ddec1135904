"""``cksim run SCENE --out DIR [--seed N] [--duration-s S]``: simulate one treatment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ..scene import load_scene


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``run`` sub-command."""
    p = sub.add_parser(
        "run", help="simulate a whole treatment; write summary.json, timeseries.csv, report",
        description="Simulate one treatment of SCENE closed loop (motion truth, markers, "
        "correlation and prediction, X-ray pairs + registration, robot) and write "
        "summary.json, timeseries.csv, beams.csv, PNG plots and a self-contained report.html "
        "into DIR. A run that stops early writes what it has and why.")
    p.add_argument("scene", help="scene YAML file")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--seed", type=int, default=None, help="override simulation.seed")
    p.add_argument("--duration-s", type=float, default=None,
                   help="override simulation.duration_s (s); the run also ends when the plan "
                   "is delivered")
    p.add_argument("--imaging", choices=("xray", "truth"), default="xray",
                   help="xray: live X-ray pair + 2D/3D registration (default); truth: ideal "
                   "registration (ablation)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots and report")
    p.add_argument("--video", action="store_true",
                   help="also write robot.gif: the robot tracking, rendered headlessly")
    p.add_argument("--video-every-s", type=float, default=10.0,
                   help="simulated seconds between video frames (default 10)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the simulation and write the outputs; exit 0, or 1 when it stopped early."""
    from ..simulation import StoppedEarly, simulate, write_run

    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed must be >= 0 (got {args.seed})")
    if args.video and not args.video_every_s > 0:
        raise InputError(f"--video-every-s must be positive (got {args.video_every_s})")
    if args.duration_s is not None and not args.duration_s > 0:
        raise InputError(f"--duration-s must be positive (got {args.duration_s})")
    scene = load_scene(args.scene)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    bar = None
    progress = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="step", desc="simulating", leave=False)
            bar.update(done - bar.n)

    try:
        result = simulate(scene, seed=args.seed, duration_s=args.duration_s,
                          imaging=args.imaging, progress=progress,
                          video_every_s=args.video_every_s if args.video else None)
        error = None
    except StoppedEarly as exc:
        result, error = exc.result, exc
    finally:
        if bar is not None:
            bar.close()
    files = write_run(out, result, plots=not args.no_plots, video=args.video)
    s = result.summary
    if not args.quiet:
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
    if s.stopped_early:
        print(f"cksim run: stopped early: {s.stopped_early}", file=sys.stderr)
        if error is not None and error.__cause__ is not None:
            raise error.__cause__
        return 1
    return 0

"""The ``cksim`` command line.

Each sub-command lives in its own module under :mod:`cyberknife_sim.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. User errors
(:class:`~cyberknife_sim.errors.CksimError`) become one line on stderr and exit code 2;
a failed registration exits with 3.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import CksimError, RegistrationFailed

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = (
    "validate",
    "phantom",
    "predict",
    "run",
    "view",
    "drr",
    "xray",
    "register",
    "bench",
)
"""Modules of :mod:`cyberknife_sim.commands`, in the order ``cksim --help`` lists them."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``cksim`` parser with every sub-command registered."""
    parser = _Parser(
        prog="cksim",
        description="Simulate CyberKnife-style robotic radiosurgery motion tracking.",
    )
    parser.add_argument("--version", action="version", version=f"cksim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cksim`` console script; returns the exit code.

    Sets ``OMP_WAIT_POLICY=passive`` unless the user set it: numba's OpenMP workers then
    sleep instead of spinning while idle (on a small machine a spinning worker takes the core
    the busy one needs). OpenMP reads it once, when numba starts its thread pool at the first
    parallel call, so it is set here before any command runs (importing the package sets
    nothing; see :mod:`cyberknife_sim.imaging._drr` for Python API users).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RegistrationFailed as exc:
        print(f"cksim {args.command}: registration failed: {exc}", file=sys.stderr)
        return 3
    except CksimError as exc:
        for line in str(exc).splitlines() or [exc.__class__.__name__]:
            print(f"cksim {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cksim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

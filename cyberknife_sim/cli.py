"""The ``cksim`` command line.

Each sub-command lives in its own module under :mod:`cyberknife_sim.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

Exit codes and stderr, for every command:

* user errors (:class:`~cyberknife_sim.errors.CksimError`, bad options) — one line
  ``cksim <cmd>: error: ...`` and exit 2 (a scene with several problems: one line per
  problem); line breaks inside a message (a file name with a newline) are escaped;
* a failed registration — exit 3;
* Ctrl-C / SIGINT, also while the command's modules are still being imported — one line
  ``cksim <cmd>: interrupted ...`` and exit 130 (143 for a SIGTERM the command turned into
  an interrupt, see ``cksim run``);
* numpy/scipy warnings raised while a command runs are not printed as they come: a failing
  command prints its one error line only; a command that succeeds prints one
  ``cksim <cmd>: warning: ...`` line summing them up.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from . import __version__
from .commands._args import attach_negative_values, one_line
from .errors import CksimError, RegistrationFailed, SceneError

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
    "qa",
    "sweep",
    "bench",
)
"""Modules of :mod:`cyberknife_sim.commands`, in the order ``cksim --help`` lists them."""

MODULE_OF = {"sweep-report": "sweep"}
"""Sub-commands registered by another command's module (the module's name)."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full ``cksim`` parser with every sub-command registered.

    Parameters
    ----------
    only : str, optional
        Register just this sub-command (one of :data:`COMMANDS`): ``cksim run ...`` then
        imports only what ``run`` needs before it starts (its output folder exists sooner
        and a Ctrl-C during start-up loses less).
    """
    parser = _Parser(
        prog="cksim",
        description="Simulate CyberKnife-style robotic radiosurgery motion tracking.",
    )
    parser.add_argument("--version", action="version", version=f"cksim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS if only not in COMMANDS else (only,):
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def _value_options(parser: argparse.ArgumentParser, command: str | None
                   ) -> tuple[set[str], set[str]]:
    """(options that take one value, all options) of ``command``'s parser."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    p = sub.choices.get(command) if sub is not None and command else None
    if p is None:
        return set(), set()
    values, every = set(), set()
    for action in p._actions:
        every.update(action.option_strings)
        if action.option_strings and action.nargs is None:
            values.update(action.option_strings)
    return values, every


@contextmanager
def _warnings_held(caught: list[str]) -> Iterator[None]:
    """Keep warnings off stderr while a command runs; their text goes into ``caught``."""
    with warnings.catch_warnings():
        def hold(message, category, filename, lineno, file=None, line=None):
            if len(caught) < 1000:
                caught.append(f"{category.__name__}: {message} "
                              f"({os.path.basename(str(filename))}:{lineno})")

        warnings.showwarning = hold
        yield


def _print_error(prog: str, exc: CksimError) -> None:
    lines = exc.problems if isinstance(exc, SceneError) and exc.problems else [str(exc)]
    for line in lines:
        print(f"{prog}: error: {one_line(line) or exc.__class__.__name__}", file=sys.stderr)


def _run_command(parser: argparse.ArgumentParser, argv: list[str],
                 command: str | None) -> int:
    values, every = _value_options(parser, command)
    args = parser.parse_args(attach_negative_values(argv, values, every))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    prog = f"cksim {args.command}"
    caught: list[str] = []
    try:
        with _warnings_held(caught):
            code = int(args.func(args) or 0)
    except RegistrationFailed as exc:
        print(f"{prog}: registration failed: {one_line(exc)}", file=sys.stderr)
        return 3
    except CksimError as exc:
        _print_error(prog, exc)
        return 2
    if caught and code == 0:
        more = f" (and {len(caught) - 1} more)" if len(caught) > 1 else ""
        print(f"{prog}: warning: {one_line(caught[0])}{more}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cksim`` console script; returns the exit code.

    Sets ``OMP_WAIT_POLICY=passive`` unless the user set it: numba's OpenMP workers then
    sleep instead of spinning while idle (on a small machine a spinning worker takes the core
    the busy one needs). OpenMP reads it once, when numba starts its thread pool at the first
    parallel call, so it is set here before any command runs (importing the package sets
    nothing; see :mod:`cyberknife_sim.imaging._drr` for Python API users).

    Values that start with a minus are accepted for options that take a value
    (``--pose -1.2,0.5,0,0,0,0``). A Ctrl-C at any time, also while the command's modules
    are being imported, gives one line and exit 130, never a traceback.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and (argv[0] in COMMANDS or argv[0] in MODULE_OF) else None
    prog = f"cksim {command}" if command else "cksim"
    try:
        parser = build_parser(only=MODULE_OF.get(command, command))
        return _run_command(parser, argv, command)
    except KeyboardInterrupt as exc:
        reason = getattr(exc, "reason", "interrupted (SIGINT, Ctrl-C)")
        print(f"{prog}: {reason}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

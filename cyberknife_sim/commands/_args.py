"""Argument helpers shared by the ``cksim`` sub-commands.

Every check here fails with :class:`~cyberknife_sim.errors.InputError` whose message is one
line naming the option and the bad value, before the command does any work:

* :func:`check_out_dir` / :func:`check_out_file` — an output folder (created up front) or
  output file (its folder created up front) that can really be written;
* :func:`parse_numbers` / :func:`parse_pose` — comma-separated numbers, finite and bounded;
* :func:`check_number`, :func:`check_seed` — one number in range;
* :func:`attach_negative_values` — lets ``--pose -1.2,0,...`` through argparse (which
  otherwise reads a leading minus as an option);
* :func:`one_line` — a message with its line breaks escaped, for one-line errors;
* :class:`Interrupted` — the ``KeyboardInterrupt`` raised by SIGINT/SIGTERM handlers, which
  carries the signal's name and exit code.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

from ..errors import InputError

__all__ = [
    "MAX_NAME_BYTES",
    "POSE_LIMITS",
    "SEED_MAX",
    "Interrupted",
    "attach_negative_values",
    "check_number",
    "check_out_dir",
    "check_out_file",
    "check_seed",
    "one_line",
    "parse_numbers",
    "parse_pose",
    "shown",
]

MAX_NAME_BYTES = 255
"""Longest file or folder name (bytes) that common file systems accept (NAME_MAX)."""

SEED_MAX = 2**63 - 1
"""Largest seed (as ``simulation.seed`` in the scene schema)."""

POSE_NAMES = ("tx", "ty", "tz", "rx", "ry", "rz")
POSE_LIMITS = (1000.0, 1000.0, 1000.0, 180.0, 180.0, 180.0)
"""Largest magnitude of each pose parameter: translations in mm, rotations in degrees."""

_VIRTUAL_ROOTS = ("/proc", "/sys")

# Characters that str.splitlines() breaks on, and the other C0/C1 controls.
_LINE_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters escaped (``\\n``, ``\\x1c``, …), so
    that a newline inside a file name or key cannot split a one-line message."""

    def esc(m: re.Match) -> str:
        return repr(m.group(0))[1:-1]

    return _LINE_BREAKS.sub(esc, str(text))


def shown(value: object, limit: int = 100) -> str:
    """A value as it appears in a message: quoted, escaped, long ones cut in the middle."""
    text = repr(str(value))
    if len(text) > limit:
        half = (limit - 3) // 2
        text = f"{text[:half]}...{text[-half:]}"
    return one_line(text)


class Interrupted(KeyboardInterrupt):
    """Raised by a command's SIGINT/SIGTERM handler; a ``KeyboardInterrupt``, so code that
    stops cleanly on Ctrl-C (the simulation loop) stops cleanly on SIGTERM too.

    Parameters
    ----------
    signal_name : str
        ``"SIGINT"`` or ``"SIGTERM"``.
    """

    EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
    WORDS = {"SIGINT": ("interrupted", "SIGINT, Ctrl-C"), "SIGTERM": ("terminated", "SIGTERM")}

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return self.EXIT_CODES.get(self.signal_name, 130)

    @property
    def reason(self) -> str:
        """What a summary says: ``interrupted (SIGINT, Ctrl-C)`` or ``terminated (SIGTERM)``."""
        return self.describe()

    def describe(self, when: str = "") -> str:
        """The reason with ``when`` after the verb: ``describe("during set-up")`` →
        ``interrupted during set-up (SIGINT, Ctrl-C)``."""
        verb, detail = self.WORDS.get(self.signal_name, ("stopped", self.signal_name))
        return f"{verb} {when} ({detail})" if when else f"{verb} ({detail})"


# ------------------------------------------------------------------------------ paths


def _check_path_text(path: str | os.PathLike, option: str) -> Path:
    """Reject an empty or blank path, a NUL byte and a name component over 255 bytes."""
    text = os.fspath(path)
    if not str(text).strip():
        raise InputError(f"{option} {shown(text)}: empty path")
    if "\0" in str(text):
        raise InputError(f"{option} {shown(text)}: the path contains a NUL character")
    p = Path(text)
    for part in p.parts:
        n = len(os.fsencode(part))
        if n > MAX_NAME_BYTES:
            raise InputError(f"{option} {shown(text)}: the name {shown(part, 40)} is {n} bytes "
                             f"long, more than the {MAX_NAME_BYTES} a file system allows")
    resolved = str(p.absolute())
    for root in _VIRTUAL_ROOTS:
        if resolved == root or resolved.startswith(root + "/"):
            raise InputError(f"{option} {shown(text)}: {root} is a virtual file system of the "
                             "kernel, not a place for output files")
    return p


def _blocking_file(p: Path) -> Path | None:
    """The first existing ancestor of ``p`` (or ``p``) that is not a folder, if any."""
    for q in [*reversed(p.absolute().parents), p.absolute()]:
        if q.exists() and not q.is_dir():
            return q
        if not q.exists():
            return None
    return None


def _probe_writable(folder: Path, option: str, text: str) -> None:
    """Create and delete a small file in ``folder``; InputError if that is impossible."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cksim-write-test-", dir=folder)
    except OSError as exc:
        raise InputError(f"{option} {shown(text)}: cannot write in {shown(folder)} "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(tmp)


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the output folder ``path`` (and its parents) now and check that files can be
    written in it, so that a command fails before its work, not after.

    Parameters
    ----------
    path : str or PathLike
        The folder as given on the command line.
    option : str
        The option's name, for the message.

    Returns
    -------
    Path
        ``Path(path)``, an existing, writable folder.

    Raises
    ------
    InputError
        Empty path, a NUL byte, a name over 255 bytes, a path under ``/proc`` or ``/sys``,
        an existing file in the way, no permission, a read-only file system.
    """
    p = _check_path_text(path, option)
    text = os.fspath(path)
    blocker = _blocking_file(p)
    if blocker is not None:
        what = "exists and is not a folder" if blocker == p.absolute() else (
            f"{shown(blocker)} is a file, not a folder")
        raise InputError(f"{option} {shown(text)}: {what}")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {shown(text)}: cannot create the folder "
                         f"({exc.strerror or exc})") from None
    if not p.is_dir():  # pragma: no cover - raced with another process
        raise InputError(f"{option} {shown(text)}: exists and is not a folder")
    _probe_writable(p, option, text)
    return p


def check_out_file(path: str | os.PathLike, option: str = "--out",
                   suffixes: Sequence[str] | None = None) -> Path:
    """Check an output file path before any work: a usable name (and suffix), not an
    existing folder or special file, in a folder that is created now and can be written.

    Parameters
    ----------
    path : str or PathLike
        The file as given on the command line.
    option : str
        The option's name, for the message.
    suffixes : sequence of str, optional
        Allowed endings (case-insensitive), e.g. ``(".nii.gz", ".nii", ".mha")``.

    Returns
    -------
    Path
        ``Path(path)``.

    Raises
    ------
    InputError
        As :func:`check_out_dir` for its folder; also a wrong suffix, an existing folder or
        special file (FIFO, device) at ``path``.
    """
    p = _check_path_text(path, option)
    text = os.fspath(path)
    if suffixes and not p.name.lower().endswith(tuple(s.lower() for s in suffixes)):
        raise InputError(f"{option} {shown(text)}: expected a file name ending in "
                         f"{' or '.join(suffixes)}")
    if p.is_dir():
        raise InputError(f"{option} {shown(text)}: is a folder; give a file name")
    if p.exists() and not p.is_file():
        raise InputError(f"{option} {shown(text)}: exists and is not a regular file")
    parent = p.parent
    blocker = _blocking_file(parent)
    if blocker is not None:
        raise InputError(f"{option} {shown(text)}: {shown(blocker)} is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {shown(text)}: cannot create its folder "
                         f"({exc.strerror or exc})") from None
    _probe_writable(parent, option, text)
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{option} {shown(text)}: the file exists and is read-only")
    return p


# ------------------------------------------------------------------------------ numbers


def check_number(value: float | None, option: str, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False) -> float | None:
    """``value`` if it is finite and within ``[low, high]`` (``(low, high]`` with
    ``low_open``); None passes through. InputError naming ``option`` otherwise."""
    import math

    if value is None:
        return None
    if not math.isfinite(value):
        raise InputError(f"{option} must be a finite number (got {value})")
    if low is not None and (value <= low if low_open else value < low):
        rel = ">" if low_open else ">="
        raise InputError(f"{option} must be {rel} {low:g} (got {value:g})")
    if high is not None and value > high:
        raise InputError(f"{option} must be <= {high:g} (got {value:g})")
    return value


def check_seed(value: int | None, option: str = "--seed") -> int | None:
    """A seed in ``0 .. 2**63-1`` (the scene schema's range); None passes through."""
    if value is not None and not 0 <= value <= SEED_MAX:
        raise InputError(f"{option} must be 0..{SEED_MAX} (got {value})")
    return value


def parse_numbers(text: str, *, option: str, names: Sequence[str],
                  limits: Sequence[float] | None = None, unit: str = ""):
    """Comma-separated numbers → float64 array of ``len(names)``.

    Parameters
    ----------
    text : str
        The option's value, e.g. ``"-1.2,0,3"``.
    option : str
        The option's name, for the message.
    names : sequence of str
        One name per expected value (``("x", "y", "z")``).
    limits : sequence of float, optional
        Largest magnitude allowed for each value.
    unit : str
        Said in the message (``"mm, deg"``).

    Raises
    ------
    InputError
        Wrong count, not a number, NaN/infinite, or beyond a limit; the message names the
        option, the value and the expected form.
    """
    import numpy as np

    form = ",".join(names) + (f" ({unit})" if unit else "")
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        raise InputError(f"{option} {shown(text)}: expected {len(names)} numbers {form}") from None
    if values.shape != (len(names),):
        raise InputError(f"{option} {shown(text)}: expected {len(names)} numbers {form} "
                         f"(got {len(parts)})")
    if not np.all(np.isfinite(values)):
        raise InputError(f"{option} {shown(text)}: expected {len(names)} finite numbers {form}")
    if limits is not None:
        for name, v, lim in zip(names, values, limits, strict=True):
            if abs(v) > lim:
                raise InputError(f"{option} {shown(text)}: {name} = {v:g} is outside "
                                 f"-{lim:g}..{lim:g}")
    return values


def parse_pose(text: str, option: str = "--pose"):
    """Six numbers ``tx,ty,tz,rx,ry,rz`` (mm, deg) → float64 (6,), each within
    :data:`POSE_LIMITS` (±1000 mm, ±180 deg)."""
    return parse_numbers(text, option=option, names=POSE_NAMES, limits=POSE_LIMITS,
                         unit="mm, deg")


# ------------------------------------------------------------------------------ argv

_NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


def attach_negative_values(argv: Sequence[str], value_options: Collection[str],
                           all_options: Collection[str] = ()) -> list[str]:
    """Join an option that takes a value with a following value that starts with a minus
    (``--pose -1,2,3`` → ``--pose=-1,2,3``), which argparse would otherwise read as an
    option (it only knows plain negative numbers such as ``-1``, not ``-1,2`` or ``-1e3``).

    Parameters
    ----------
    argv : sequence of str
        The command line after the program name.
    value_options : collection of str
        Option strings that take exactly one value.
    all_options : collection of str
        Every option string of the parser, to resolve abbreviations (``--po`` for
        ``--pose``) the way argparse does: a unique prefix.

    Returns
    -------
    list of str
        ``argv`` with those pairs joined; nothing after ``--`` is touched.
    """
    longs = [o for o in (all_options or value_options) if o.startswith("--")]
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            out.extend(argv[i:])
            break
        name = tok if tok in value_options else None
        if name is None and tok.startswith("--") and "=" not in tok:
            matches = [o for o in longs if o.startswith(tok)]
            if len(matches) == 1 and matches[0] in value_options:
                name = matches[0]
        if name is not None and i + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}" if tok.startswith("--") else tok + argv[i + 1])
            i += 2
            continue
        out.append(tok)
        i += 1
    return out

"""Where cyberknife_sim keeps its on-disk caches (generated plans, truth patients).

``$CKSIM_CACHE_DIR/<name>`` when ``CKSIM_CACHE_DIR`` is set, else the user cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows) ``/cyberknife_sim/<name>``. Each cache has its own on/off
environment switch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "atomic_write_bytes", "cache_folder", "cache_switch_on"]

CACHE_DIR_ENV = "CKSIM_CACHE_DIR"
"""Environment variable: the cyberknife_sim cache folder (one subfolder per cache)."""


def cache_switch_on(env: str) -> bool:
    """False when the environment variable ``env`` is ``0``, ``off``, ``false`` or ``no``."""
    return os.environ.get(env, "").strip().lower() not in ("0", "off", "false", "no")


def cache_folder(name: str) -> Path:
    """The folder of cache ``name`` (see the module docstring); not created here."""
    root = os.environ.get(CACHE_DIR_ENV, "").strip()
    if root:
        return Path(root).expanduser() / name
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cyberknife_sim" / name


def atomic_write_bytes(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder (created if
    needed), flushed to disk, then moved into place. A cache entry is thus either whole or
    absent. Returns False (writing nothing) when the folder cannot be written."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem[:16] + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        return True
    except OSError:
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

"""Where cyberknife_sim keeps its on-disk caches (generated plans, truth patients).

``$CKSIM_CACHE_DIR/<name>`` when ``CKSIM_CACHE_DIR`` is set, else the user cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows) ``/cyberknife_sim/<name>``. Each cache has its own on/off
environment switch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "cache_folder", "cache_switch_on"]

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

"""A small on-disk cache of numpy arrays, for results that are pure functions of their inputs
and costly to recompute in every process (a phantom's planning-CT acquisition, a plan's beam
doses and MU).

An entry is ``<folder>/<key>.npz``: plain arrays only (``allow_pickle=False``), written to a
temporary file in the same folder and moved into place (atomic). The key is the SHA-256 of
a JSON payload the caller builds from everything the result depends on; :func:`source_hash`
adds the code that computes it, so any edit of that code is a miss. A missing, unreadable or
corrupt entry is a miss; a folder that cannot be written only means no caching. The folder
follows :mod:`cyberknife_sim._cache_dirs` (``$CKSIM_CACHE_DIR/<name>``), each cache has its
own on/off switch (an environment variable: ``0``/``off``/``false``/``no``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ._cache_dirs import atomic_write_bytes, cache_folder, cache_switch_on

__all__ = ["NpzCache", "source_hash"]

_PKG = Path(__file__).resolve().parent


def source_hash(relative_paths: Iterable[str]) -> str:
    """SHA-256 (hex) of the package source files ``relative_paths`` (relative to the package
    folder; a glob such as ``"dose/*.py"`` is expanded, sorted)."""
    h = hashlib.sha256()
    for rel in relative_paths:
        for f in sorted(_PKG.glob(rel)):
            h.update(f.relative_to(_PKG).as_posix().encode())
            with contextlib.suppress(OSError):
                h.update(f.read_bytes())
    return h.hexdigest()


class NpzCache:
    """One named cache folder of ``.npz`` entries.

    Parameters
    ----------
    name : str
        Subfolder of the cache folder (e.g. ``"planning_ct"``).
    switch_env : str
        Environment variable that turns this cache off.
    """

    def __init__(self, name: str, *, switch_env: str) -> None:
        self.name = name
        self.switch_env = switch_env

    @property
    def enabled(self) -> bool:
        """False when the switch variable says off."""
        return cache_switch_on(self.switch_env)

    @property
    def folder(self) -> Path:
        """The cache's folder (not created here)."""
        return cache_folder(self.name)

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        """SHA-256 (hex) of ``payload`` as canonical JSON (with numpy's version added)."""
        blob = json.dumps({**payload, "numpy": np.__version__}, sort_keys=True,
                          separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays of entry ``key``, or None (off, missing, unreadable or corrupt)."""
        if not self.enabled:
            return None
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        return arrays if arrays.get("__key__", np.array("")).item() == key else None

    def store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write entry ``key`` atomically; an unwritable folder is ignored."""
        if not self.enabled:
            return
        buf = io.BytesIO()
        np.savez(buf, __key__=np.array(key), **arrays)
        atomic_write_bytes(self.folder / f"{key}.npz", buf.getvalue())

    def get_or_build(self, key: str, build: Callable[[], Any],
                     to_arrays: Callable[[Any], dict[str, np.ndarray]],
                     from_arrays: Callable[[dict[str, np.ndarray]], Any]) -> Any:
        """``from_arrays(entry)`` on a hit, else ``build()`` (stored through ``to_arrays``)."""
        arrays = self.load(key)
        if arrays is not None:
            with contextlib.suppress(KeyError, ValueError, TypeError, IndexError):
                return from_arrays(arrays)
        value = build()
        self.store(key, to_arrays(value))
        return value

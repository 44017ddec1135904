"""Import PyBullet without the banner its C extension writes to stderr.

``import pybullet`` prints "pybullet build time: ..." straight to file descriptor 2, which
would break the CLI's promise of one clean error line. The import is done once here with
fd 2 pointed at /dev/null; everything else imports ``pb`` from this module.
"""

from __future__ import annotations

import os
import sys

__all__ = ["pb"]


def _quiet_import():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import pybullet
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return pybullet


pb = _quiet_import()

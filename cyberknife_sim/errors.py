"""Project exceptions.

Errors a user can cause (a bad scene, an unreadable CT, an empty image, a target outside
the CT) raise :class:`CksimError` or a subclass with a one-line message that says what is
wrong and where. The CLI prints that line and exits with code 2; it never shows a traceback
for them.
"""

from __future__ import annotations

__all__ = [
    "CksimError",
    "InputError",
    "RegistrationFailed",
    "SceneError",
]


class CksimError(Exception):
    """Base class of errors a user can cause; ``str(err)`` is the one-line message."""


class InputError(CksimError, ValueError):
    """A file or argument that cannot be used (missing, unreadable, wrong shape or range)."""


class SceneError(CksimError):
    """A scene file with one or more problems.

    Parameters
    ----------
    problems : list of str
        One line per problem, each ``file: key.path: what is wrong (got X)``.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RegistrationFailed(CksimError):
    """A registration judged untrustworthy (CLI exit code 3)."""

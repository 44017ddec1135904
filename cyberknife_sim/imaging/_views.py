"""What every DRR renderer of a set of views shares: render all views, or one."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..geometry import check_transform
from ._geometry import ViewGeometry

__all__ = ["MultiViewRenderer"]


class MultiViewRenderer:
    """Base of the DRR renderers: subclasses set ``self.views`` and implement ``_render``
    (one view, ``room_from_ct`` already checked)."""

    views: tuple[ViewGeometry, ...]

    def render(self, room_from_ct: ArrayLike) -> tuple[NDArray[np.float32], ...]:
        """Line integrals ∫μ dl for every view, in view order.

        Parameters
        ----------
        room_from_ct : array-like, shape (4, 4)
            Pose of the CT in the room (rigid, mm).

        Returns
        -------
        tuple of ndarray, each shape ``view.shape`` (rows, cols), float32
            Dimensionless line integrals from the source to each pixel center.
        """
        m = check_transform(room_from_ct, name="room_from_ct")
        return tuple(self._render(m, v) for v in self.views)

    def render_view(self, room_from_ct: ArrayLike, index: int) -> NDArray[np.float32]:
        """Line integrals of one view (``self.views[index]``); see :meth:`render`."""
        if not -len(self.views) <= index < len(self.views):
            raise IndexError(f"view index {index} out of range for {len(self.views)} views")
        return self._render(check_transform(room_from_ct, name="room_from_ct"),
                            self.views[index])

    def _render(self, room_from_ct: NDArray[np.float64], view: ViewGeometry) -> NDArray:
        raise NotImplementedError

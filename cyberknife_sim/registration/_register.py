"""Fiducial-free 6-DoF spine registration of a live orthogonal pair to the planning CT.

Pipeline of :meth:`Registration2D3D.register` (stage names as in ``stage_ms``):

``preprocess``
    Live images → line integrals (log transform for uint16 counts), cropped to a search
    window per view around the ROI's projection, detector defects (dead/hot pixels and
    lines) replaced by the local median, enhanced at a coarse and a fine scale
    (difference of Gaussians, :mod:`._enhance`) and saturated at 4 robust sigmas. A
    target so near the CT's edge that too little of the ROI lies inside the CT is
    refused before anything else (``roi_model`` moves a clipped ROI box off the edge).
``initial``
    Per view, NCC template matching of the enhanced planned-pose DRR of the ROI in the
    live search window (half resolution, sub-pixel peak); the two 2-D shifts of the target's
    projection are triangulated into a 3-D translation through the projection matrices.
``coarse``
    Gauss-Newton over all six parameters on both views at once (:mod:`._gauss_newton`,
    inverse compositional: the Jacobian comes from the DRR and is computed once) against
    the planned-pose DRRs at half resolution, moving each DRR pixel with its μ-weighted
    3-D point (:mod:`._depth`).
``rerender``, ``refine``
    Real DRRs of the ROI are rendered at the estimate (``DrrRenderer``), their depth maps
    recomputed (half resolution), and Gauss-Newton repeats from there at full resolution:
    a first round on 30 % of the pixels brings the pose near the optimum, the last round
    on all of them runs to a plateau (a negligible step or cost decrease, at most 10
    iterations). This resolves what the single-depth model gets wrong (out-of-plane
    rotations). Further rounds (``max_refinements`` > 2) run only while a round still
    moves the pose by more than 0.15 mm or 0.15 deg.
``target_level``
    (``target_level_weight_mm``, default 20 mm) The ROI spans about four vertebrae, which
    breathing moves by different amounts, so the whole-ROI optimum is their compromise. A
    last translation-only Gauss-Newton on the last round's pixels, weighted by a Gaussian
    of their 3-D point's CT z distance from the target, moves the pose to the target's
    vertebra (rotations stay the whole ROI's: one vertebra's lever arm is too short for
    them). Capture and the coarse stages keep the whole ROI.
``verdict``
    Accepted only if each view's final NCC reaches ``min_ncc``, the two views agree, the
    pose lies within the capture range, the last round converged (plateau), the
    target-level polish moved the pose by at most 2 mm, and, when the final NCC is
    mediocre, the live images match their own views' planned DRRs better than the other
    view's (swapped views).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..anatomy import Volume
from ..errors import InputError
from ..geometry import check_transform, invert, matrix_from_pose, pose_from_matrix, translation
from ..imaging import DrrRenderer, ViewGeometry
from ._depth import Window, pixel_points_room, splat_depth
from ._enhance import EnhanceMethod, enhance
from ._gauss_newton import LiveLevel, RefLevel, _evaluate, gauss_newton
from ._projective import project, triangulate_shift
from ._roi import DrrContent, roi_model
from ._shift import match_template, match_template_candidates

__all__ = ["Registration2D3D", "RegistrationResult"]

# Resolution levels: reduction factor, DoG sigmas (pixels of the reduced image), and how
# many of the strongest-gradient DRR pixels per view drive Gauss-Newton.
_LEVELS = {"coarse": {"scale": 2, "sigma": 1.25, "background": 5.0, "n_pixels": 3000},
           "fine": {"scale": 1, "sigma": 0.8, "background": 4.0, "n_pixels": 10000}}
# A fine refinement round whose total update is below these has settled (no further round);
# the result counts as converged when the last round's update is below the wider bounds.
_SETTLED_MM, _SETTLED_DEG = 0.15, 0.15
# The last round has converged when its last step, or its last relative cost decrease, is
# below these (a plateau of the similarity).
_PLATEAU_STEP_MM, _PLATEAU_STEP_DEG = 0.05, 0.05
_PLATEAU_COST = 1e-3
# Depth maps (smooth by construction) are splatted into 2x2 pixel blocks.
_DEPTH_SCALE = 2
_DEPTH_POINTS = 12_000
# Re-render/refine rounds: the first only brings the pose near the optimum (part of the
# pixels, a looser tolerance in mm and deg), later ones use all of them.
_REFINE = {"first": {"pixel_fraction": 0.3, "max_iterations": 5, "tol": 0.03},
           "last": {"pixel_fraction": 1.0, "max_iterations": 10, "tol": 0.02}}
# Gauss-Newton variant (see gauss_newton): the inverse-compositional one computes its
# Jacobian once per DRR.
_GN_METHOD = "inverse"
# The target-level polish (``target_level_weight_mm``) corrects the whole-ROI compromise
# of vertebrae that moved by different amounts: a shift beyond this is no such correction
# (a wrong level, a broken optimisation) and the pair is refused.
_TARGET_LEVEL_MAX_SHIFT_MM = 2.0
# Enhanced live images are saturated at this many robust standard deviations (1.4826 MAD):
# a structure the DRRs cannot contain (the cut edge of a truncated volume, a collimator
# blade, a dead column) must not dominate the template match or the normalisation.
_LIVE_CLIP_SIGMAS: float | None = 4.0
# Live-image defects: a pixel whose line integral differs from its 5x5 median by more than
# this (and 8 robust sigmas) is a detector defect, not anatomy (see _repair_defects).
_DEFECT_MIN = 0.5


def _angle_deg(motion: NDArray) -> float:
    """Rotation angle of a rigid 4x4 transform (deg)."""
    return float(np.degrees(np.arccos(np.clip((np.trace(motion[:3, :3]) - 1) / 2, -1, 1))))


def _repair_defects(li: NDArray[np.float32]) -> NDArray[np.float32]:
    """Replace detector defects (dead or hot pixels, lines up to 2 pixels wide) in a
    line-integral image by the 5x5 median: pixels that differ from it by more than
    ``max(8 robust sigmas, _DEFECT_MIN)`` — far more than noise or any bone edge."""
    if li.shape[0] < 5 or li.shape[1] < 5:
        return li
    med = cv2.medianBlur(li, 5)
    dev = li - med
    sigma = 1.4826 * float(np.median(np.abs(dev)))
    bad = np.abs(dev) > max(8.0 * sigma, _DEFECT_MIN)
    if not bad.any():
        return li
    return np.where(bad, med, li)


def _saturate(image: NDArray[np.float32], n_sigmas: float | None) -> NDArray[np.float32]:
    """Clip an enhanced image to ``median ± n_sigmas · 1.4826 · MAD`` (None: unchanged)."""
    if n_sigmas is None:
        return image
    med = float(np.median(image))
    mad = float(np.median(np.abs(image - med)))
    if mad <= 0:
        return image
    half = np.float32(n_sigmas * 1.4826 * mad)
    return np.clip(image, np.float32(med) - half, np.float32(med) + half)


def _reduce(image: NDArray, scale: int) -> NDArray[np.float32]:
    """Average ``scale × scale`` blocks (trailing odd rows/columns dropped)."""
    img = np.asarray(image, dtype=np.float32)
    if scale == 1:
        return img
    h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
    return cv2.resize(img[:h, :w], (w // scale, h // scale), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class RegistrationResult:
    """Outcome of one registration.

    Attributes
    ----------
    pose : ndarray, shape (6,)
        ``(tx, ty, tz, rx, ry, rz)`` (mm, deg): the anatomy's rigid motion in the room about
        the room origin, ``room_from_ct = matrix_from_pose(pose) @ planned_room_from_ct``.
    room_from_ct : ndarray, shape (4, 4)
        The registered CT pose (mm).
    accepted : bool
        False when the result must not be trusted (see ``reason``).
    reason : str
        ``"ok"`` or why the registration failed.
    quality : dict
        Per-view NCC (``ncc``), triangulation residual (``view_disagreement_mm``),
        template scores, iterations per stage, each refine round's update
        (``refine_update``: mm, deg), the last step tried (``last_step``: mm, deg) and last
        relative cost decrease (``last_cost_change``), ``converged``, and when the swapped-
        view check ran, ``view_match`` (template NCC of each live image against its own
        and the other view's planned DRR).
    elapsed_ms : float
        Wall time of :meth:`Registration2D3D.register` (ms).
    stage_ms : dict of str to float
        Wall time per stage (ms).
    """

    pose: NDArray[np.float64]
    room_from_ct: NDArray[np.float64]
    accepted: bool
    reason: str
    quality: dict
    elapsed_ms: float
    stage_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain-JSON form (as printed by ``cksim register``)."""
        return {"pose": [float(x) for x in self.pose], "accepted": bool(self.accepted),
                "reason": self.reason, "quality": self.quality,
                "elapsed_ms": float(self.elapsed_ms),
                "stage_ms": {k: float(v) for k, v in self.stage_ms.items()},
                "room_from_ct": self.room_from_ct.tolist()}


@dataclass
class _ViewState:
    """Per-view constants: geometry, windows, hull of the ROI footprint."""

    view: ViewGeometry
    drr_window: Window
    live_window: Window


class Registration2D3D:
    """Registration of live orthogonal X-ray pairs to one planning CT (build once per treatment).

    Parameters
    ----------
    volume : Volume
        Planning CT (HU).
    views : sequence of two ViewGeometry
        Geometry of the live images (full detector at the images' binning).
    target_ct_mm : array-like, shape (3,)
        Target (CT mm); the ROI box is centred on it.
    mu_water_per_mm : float
        Attenuation of water (1/mm) at the effective energy.
    planned_room_from_ct : array-like, shape (4, 4)
        CT pose at pose zero (puts the target at the room origin).
    roi_half_size_mm : float or array-like, shape (3,)
        Half size of the ROI box along the CT's i, j, k axes (mm); the default covers the
        treated vertebra and about half of each neighbour.
    content : {"bone", "all"}
        What the registration's DRRs contain (see :func:`._roi.roi_model`).
    enhance_method : {"dog", "gradient", "tophat", "clahe"}
        Enhancement of live images and DRRs.
    capture_mm, capture_deg : float
        Capture range: the search window covers ``capture_mm`` of translation, and a
        pose beyond ``capture_mm`` (translation norm) or ``capture_deg`` (rotation angle)
        is reported as failed.
    min_ncc : float
        Smallest acceptable final NCC per view (calibrated on good registrations).
    max_disagreement_mm : float
        Largest acceptable disagreement between the views' initial 2-D shifts (mm at the
        imaging center).
    open_field_counts : float, optional
        Counts of an unattenuated pixel, to convert uint16 live images to line integrals;
        if omitted, the brightest pixel stands in (enhancement ignores the offset).
    max_refinements : int
        Re-render/refine rounds after the first estimate.
    oversampling : float
        ``DrrRenderer`` in-plane oversampling of the registration's DRRs. 2 (was 1): on
        live images the registration was not built from (plastimatch renders of a 3 mm CT,
        ``scripts/registration_study.py``) 1 leaves a DRR model error that the
        out-of-plane rotations absorb (mTRE p95 0.81 → 0.29 mm, rotation p95 up to
        1.08 → 0.50 deg on 16 poses); on the 1.5 mm phantom it changes little.
    n_candidates : int
        Template-match candidates kept per view for the consistent-pair search.
    huber : float, optional
        Huber threshold of the robust Gauss-Newton (normalised residual units); None for
        least squares.
    swap_check_below_ncc : float
        Swapped-view check, run when a view's final NCC is below this (a swapped pair of
        the nearly symmetric spine can register to a mirrored, consistent pose with a
        mediocre NCC): each live image is template-matched against the planned DRRs of
        both views (``quality["view_match"]``); the pair fails when the crossed
        assignment matches better. 1.0 runs it always, 0 never.
    min_roi_inside_fraction, min_core_inside_fraction : float
        A target near the CT's edge: the ROI box is clipped to the CT (and tapered only
        briefly at the cut). Every registration is refused ("too little bone in the ROI")
        when less than this share of the ROI box, or of the ±15 mm core about the target,
        lies inside the CT (``roi.inside_fraction``, ``roi.core_inside_fraction``).
    target_level_weight_mm : float, optional
        Sigma (mm, along CT z, the spine axis) of the target-level weighting of the final
        translation-only polish; None or 0: off (the whole-ROI pose). The verdict's NCC
        stays the whole ROI's (``quality["ncc"]``; the weighted one is
        ``quality["ncc_target_weighted"]``, the polish's shift
        ``quality["target_level_shift_mm"]``). Realistic live images (4D truth, each
        vertebra moved by its own share of the breathing offset, 30 pairs at breath level
        0.6-1): mTRE median / p95 0.23 / 0.32 → 0.18 / 0.23 mm (phantom, 1.5 mm CT) and
        0.74 / 0.87 → 0.67 / 0.80 mm (real 3 mm CT); static pairs unchanged (0.069 → 0.070
        mm phantom, 0.235 → 0.237 mm real CT). Smaller sigmas gain more under breathing
        (8 mm: 0.13 and 0.53 mm) but lose static accuracy (0.069 → 0.104 mm).
    """

    def __init__(self, volume: Volume, views: Sequence[ViewGeometry], *,
                 target_ct_mm: ArrayLike, mu_water_per_mm: float,
                 planned_room_from_ct: ArrayLike, roi_half_size_mm: float | ArrayLike = 60.0,
                 content: DrrContent = "bone", enhance_method: EnhanceMethod = "dog",
                 capture_mm: float = 25.0, capture_deg: float = 6.0, min_ncc: float = 0.3,
                 max_disagreement_mm: float = 3.0, open_field_counts: float | None = None,
                 max_refinements: int = 2, oversampling: float = 2.0,
                 n_candidates: int = 4, huber: float | None = 0.5,
                 swap_check_below_ncc: float = 0.6, min_roi_inside_fraction: float = 0.4,
                 min_core_inside_fraction: float = 0.7,
                 target_level_weight_mm: float | None = 20.0) -> None:
        views = tuple(views)
        if len(views) != 2 or not all(isinstance(v, ViewGeometry) for v in views):
            raise ValueError("views: expected two ViewGeometry objects")
        self.views = views
        self.planned_room_from_ct = check_transform(planned_room_from_ct,
                                                    name="planned_room_from_ct")
        self.target_ct_mm = np.asarray(target_ct_mm, dtype=np.float64)
        self.mu_water_per_mm = float(mu_water_per_mm)
        self.enhance_method = enhance_method
        self.capture_mm = float(capture_mm)
        self.capture_deg = float(capture_deg)
        self.min_ncc = float(min_ncc)
        self.max_disagreement_mm = float(max_disagreement_mm)
        self.open_field_counts = open_field_counts
        self.max_refinements = int(max_refinements)
        self.n_candidates = int(n_candidates)
        self.huber = huber
        self.swap_check_below_ncc = float(swap_check_below_ncc)
        self.roi = roi_model(volume, self.target_ct_mm, half_size_mm=roi_half_size_mm,
                             mu_water_per_mm=self.mu_water_per_mm, content=content)
        self.target_room = (self.planned_room_from_ct @ np.append(self.target_ct_mm, 1.0))[:3]
        self.min_roi_inside_fraction = float(min_roi_inside_fraction)
        self.min_core_inside_fraction = float(min_core_inside_fraction)
        self.target_level_weight_mm = (float(target_level_weight_mm)
                                       if target_level_weight_mm else None)
        if self.target_level_weight_mm is not None and not self.target_level_weight_mm > 0:
            raise ValueError("target_level_weight_mm must be positive (or None/0: off)")
        self.unusable_reason = self._roi_check()

        # the depth maps are smooth averages: a subset of the bone points is enough
        stride = max(1, int(np.ceil(len(self.roi.points_ct) / _DEPTH_POINTS)))
        self._depth_points_ct = np.ascontiguousarray(self.roi.points_ct[::stride])
        self._depth_weights = np.ascontiguousarray(self.roi.weights[::stride])
        self._states: list[_ViewState] = []
        corners_room = (self.roi.corners_ct @ self.planned_room_from_ct[:3, :3].T
                        + self.planned_room_from_ct[:3, 3])
        for v in views:
            uv = project(v.projection_matrix, corners_room)
            drr_w = Window.around(uv.min(axis=0), uv.max(axis=0), v.shape)
            margin = self._mm_to_px(v, self.capture_mm) + 8
            live_w = Window.around(uv.min(axis=0) - margin, uv.max(axis=0) + margin, v.shape)
            self._states.append(_ViewState(v, drr_w, live_w))
        self.renderer = DrrRenderer(self.roi.volume, [s.drr_window.view(s.view)
                                                      for s in self._states],
                                    mu_water_per_mm=self.mu_water_per_mm,
                                    oversampling=oversampling)
        self._planned_refs = self._reference(self.planned_room_from_ct,
                                             levels=("coarse", "fine"))

    # --- helpers --------------------------------------------------------------------------
    def _roi_check(self) -> str | None:
        """Why the ROI cannot support a registration (too much of it outside the CT), or None."""
        out, core = 1.0 - self.roi.inside_fraction, 1.0 - self.roi.core_inside_fraction
        if (self.roi.inside_fraction >= self.min_roi_inside_fraction
                and self.roi.core_inside_fraction >= self.min_core_inside_fraction):
            return None
        return (f"too little bone in the ROI: {100 * out:.0f} % of the ROI "
                f"({100 * core:.0f} % of the ±15 mm about the target) lies outside the CT "
                f"(cut at {', '.join(self.roi.clipped_faces) or 'no face'}; limits "
                f"{100 * (1 - self.min_roi_inside_fraction):.0f} % and "
                f"{100 * (1 - self.min_core_inside_fraction):.0f} %)")

    def _mm_to_px(self, view: ViewGeometry, mm: float) -> int:
        """Pixels spanned at the detector by ``mm`` at the target (magnified)."""
        mag = view.source_to_detector_mm / float(
            np.linalg.norm(self.target_room - view.source_room))
        return int(np.ceil(mm * mag / view.pixel_spacing_mm))

    def _reference(self, room_from_ct: NDArray, *, levels: tuple[str, ...],
                   n_pixels: int | None = None) -> dict:
        """Render DRRs at a pose and build each level's :class:`RefLevel` per view
        (``n_pixels`` overrides the level's number of driving pixels per view)."""
        drrs = self.renderer.render(room_from_ct)
        pts_room = self._depth_points_ct @ room_from_ct[:3, :3].T + room_from_ct[:3, 3]
        target_room = (room_from_ct @ np.append(self.target_ct_mm, 1.0))[:3]
        corners = self.roi.corners_ct @ room_from_ct[:3, :3].T + room_from_ct[:3, 3]
        out: dict = {"drr": drrs, "room_from_ct": room_from_ct, "levels": {}}
        for lvl in levels:
            out["levels"][lvl] = []
        for st, drr in zip(self._states, drrs, strict=True):
            v, w = st.view, st.drr_window
            p = v.projection_matrix
            target_depth = float(p[2, :3] @ target_room + p[2, 3])
            depth = splat_depth(v, w, pts_room, self._depth_weights, default_depth_mm=target_depth,
                                scale=_DEPTH_SCALE)
            hull = project(p, corners) - np.array([w.c0, w.r0])
            mask = np.zeros((w.h, w.w), np.float32)
            cv2.fillConvexPoly(mask, cv2.convexHull(np.rint(hull).astype(np.int32)), 1.0)
            for lvl in levels:
                cfg = _LEVELS[lvl]
                sc = cfg["scale"]
                img = enhance(_reduce(drr, sc), method=self.enhance_method,
                              sigma_px=cfg["sigma"], background_sigma_px=cfg["background"])
                erode = max(2, int(round(2 * cfg["sigma"])))
                m = cv2.erode(_reduce(mask, sc), np.ones((2 * erode + 1, 2 * erode + 1),
                                                         np.float32)) > 0.99
                gc = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=1)
                gr = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=1)
                strength = np.where(m, gc * gc + gr * gr, -1.0).ravel()
                n = min(int(n_pixels or cfg["n_pixels"]), int(m.sum()))
                idx = np.argpartition(strength, -n)[-n:] if n > 0 else np.zeros(0, int)
                rows, cols = np.unravel_index(np.sort(idx), img.shape)
                vals = img[rows, cols].astype(np.float64)
                std = max(vals.std(), 1e-12)
                vals = (vals - vals.mean()) / std
                # enhanced-DRR gradient per full-resolution pixel, in the same normalised units
                grads = np.column_stack([gc[rows, cols], gr[rows, cols]]).astype(np.float64) * (
                    0.5 / sc / std)
                fc = sc * cols + 0.5 * (sc - 1)  # full-resolution window pixel
                fr = sc * rows + 0.5 * (sc - 1)
                d = depth[np.clip(np.rint((fr - 0.5 * (_DEPTH_SCALE - 1)) / _DEPTH_SCALE)
                                  .astype(int), 0, depth.shape[0] - 1),
                          np.clip(np.rint((fc - 0.5 * (_DEPTH_SCALE - 1)) / _DEPTH_SCALE)
                                  .astype(int), 0, depth.shape[1] - 1)].astype(np.float64)
                pts = pixel_points_room(v, fc + w.c0, fr + w.r0, d)
                out["levels"][lvl].append(RefLevel(p, pts, vals, grads))
                out.setdefault("enhanced", {}).setdefault(lvl, []).append(img)
        return out

    def _line_integrals(self, image: ArrayLike, index: int,
                        window: Window) -> NDArray[np.float32]:
        """Live image (line integrals or counts) → float32 line integrals over ``window``."""
        v = self.views[index]
        a = np.asarray(image)
        if a.ndim != 2 or a.shape != v.shape:
            raise InputError(f"live image {v.name}: shape {a.shape} does not match the "
                             f"geometry's detector shape {v.shape}")
        if np.issubdtype(a.dtype, np.integer):
            i0 = self.open_field_counts or max(float(a.max()), 1.0)
            crop = np.maximum(a[window.slices].astype(np.float32), np.float32(0.5))
            return np.float32(np.log(i0)) - cv2.log(crop)
        li = a[window.slices].astype(np.float32)
        if not np.all(np.isfinite(li)):
            raise InputError(f"live image {v.name}: contains NaN or infinite values")
        return li

    # --- the registration -----------------------------------------------------------------
    def register(self, live_images: Sequence[ArrayLike], *,
                 initial_pose: ArrayLike | None = None,
                 rng: np.random.Generator | None = None) -> RegistrationResult:
        """Register one live pair.

        Parameters
        ----------
        live_images : sequence of two arrays, each shape ``view.shape``
            Line integrals (float) or detector counts (integer dtype), in view order.
        initial_pose : array-like, shape (6,), optional
            Start here (mm, deg) instead of searching from the planned pose.
        rng : numpy.random.Generator, optional
            Unused (the method is deterministic); accepted for a uniform API.

        Returns
        -------
        RegistrationResult
        """
        del rng
        t_start = time.perf_counter()
        stage: dict[str, float] = {}
        clock = [t_start]

        def lap(name: str) -> None:
            now = time.perf_counter()
            stage[name] = stage.get(name, 0.0) + 1e3 * (now - clock[0])
            clock[0] = now

        if len(live_images) != 2:
            raise InputError(f"expected a pair of live images, got {len(live_images)}")
        quality: dict = {"ncc": [0.0, 0.0], "iterations": {},
                         "roi_inside_fraction": self.roi.inside_fraction,
                         "roi_core_inside_fraction": self.roi.core_inside_fraction}
        if self.unusable_reason is not None:
            return self._result(np.eye(4), False, self.unusable_reason, quality, stage,
                                t_start)
        lives: dict[str, list[LiveLevel]] = {"coarse": [], "fine": []}
        blank = []
        for k, (img, st) in enumerate(zip(live_images, self._states, strict=True)):
            li = _repair_defects(self._line_integrals(img, k, st.live_window))
            for lvl in ("coarse", "fine"):
                cfg = _LEVELS[lvl]
                e = _saturate(enhance(_reduce(li, cfg["scale"]), method=self.enhance_method,
                                      sigma_px=cfg["sigma"],
                                      background_sigma_px=cfg["background"]),
                              _LIVE_CLIP_SIGMAS)
                lives[lvl].append(LiveLevel.from_image(e, st.live_window.c0,
                                                       st.live_window.r0, scale=cfg["scale"]))
            blank.append(float(np.std(lives["fine"][-1].image)) < 1e-6)
        lap("preprocess")
        if any(blank):
            names = [st.view.name for st, b in zip(self._states, blank, strict=True) if b]
            return self._result(np.eye(4), False, f"live image(s) {', '.join(names)} show no "
                                "structure (blank)", quality, stage, t_start)

        # --- initial translation by template matching + triangulation ---------------------
        if initial_pose is None:
            cands = []
            for k, st in enumerate(self._states):
                found = match_template_candidates(lives["coarse"][k].image,
                                                  self._planned_refs["enhanced"]["coarse"][k],
                                                  n_candidates=self.n_candidates)
                base = np.array([st.live_window.c0 - st.drr_window.c0,
                                 st.live_window.r0 - st.drr_window.r0], dtype=np.float64)
                # reduced → full pixels
                cands.append([(_LEVELS["coarse"]["scale"] * off + base, sc) for off, sc in found])
            t_mm, disagreement, scores = self._best_pair(cands)
            quality["template_scores"] = [float(x) for x in scores]
            quality["view_disagreement_mm"] = disagreement
            start = translation(t_mm)
        else:
            start = matrix_from_pose(np.asarray(initial_pose, dtype=np.float64))
            disagreement = 0.0
            quality["view_disagreement_mm"] = None
        lap("initial")

        # --- Gauss-Newton, coarse then fine, against the planned-pose DRRs ----------------
        refs = self._planned_refs
        motion, info = gauss_newton(refs["levels"]["coarse"], lives["coarse"], start,
                                    max_iterations=12, tol_mm=0.1, tol_deg=0.1,
                                    huber=self.huber, method=_GN_METHOD)
        quality["iterations"]["coarse"] = info["iterations"]
        lap("coarse")

        # --- re-render at the estimate and refine ---------------------------------------------
        room_from_ct = motion @ self.planned_room_from_ct
        quality["iterations"]["refine"] = []
        quality["refine_update"] = []
        n_rounds = 0
        for k in range(self.max_refinements):
            if not self._plausible(room_from_ct):
                break
            first = k == 0 and self.max_refinements > 1
            cfg = _REFINE["first" if first else "last"]
            refs = self._reference(room_from_ct, levels=("fine",),
                                   n_pixels=int(cfg["pixel_fraction"]
                                                * _LEVELS["fine"]["n_pixels"]))
            lap("rerender")
            rel, info = gauss_newton(refs["levels"]["fine"], lives["fine"], np.eye(4),
                                     max_iterations=cfg["max_iterations"], tol_mm=cfg["tol"],
                                     tol_deg=cfg["tol"], huber=self.huber, method=_GN_METHOD)
            room_from_ct = rel @ room_from_ct
            n_rounds += 1
            upd = (float(np.linalg.norm(rel[:3, 3])), _angle_deg(rel))
            quality["iterations"]["refine"].append(info["iterations"])
            quality["refine_update"].append([round(upd[0], 4), round(upd[1], 4)])
            lap("refine")
            # the fixed point of render-then-refine: a full round that barely moves the pose
            # needs no other; a further round only while the last one still moved it
            if not first and (upd[0] < _SETTLED_MM and upd[1] < _SETTLED_DEG):
                break
        quality["ncc"] = [float(c) for c in info["ncc"]]
        if n_rounds and self.target_level_weight_mm is not None:
            room_from_ct = self._target_level_round(refs, lives["fine"], rel, quality,
                                                    self.target_level_weight_mm)
            lap("target_level")
        # converged: the last round ended on a plateau (its last step or its last cost
        # decrease was negligible), whatever the number of iterations it took
        quality["last_step"] = [float(info["last_step_mm"]), float(info["last_step_deg"])]
        quality["last_cost_change"] = float(info["last_cost_change"])
        quality["converged"] = bool(n_rounds > 0 and (
            (info["last_step_mm"] < _PLATEAU_STEP_MM and info["last_step_deg"] < _PLATEAU_STEP_DEG)
            or info["last_cost_change"] < _PLATEAU_COST))
        if min(quality["ncc"]) < self.swap_check_below_ncc:
            quality["view_match"] = self._view_match(lives["coarse"])

        # --- verdict ------------------------------------------------------------------------
        motion = room_from_ct @ invert(self.planned_room_from_ct)
        reason = self._verdict(motion, quality, disagreement)
        lap("verdict")
        return self._result(motion, reason == "ok", reason, quality, stage, t_start)

    def _target_level_round(self, refs: dict, lives: list[LiveLevel], rel: NDArray,
                            quality: dict, sigma: float) -> NDArray:
        """The target-level translation polish after the last refine round (see
        ``target_level_weight_mm``): the last round's DRR pixels, weighted by a Gaussian of
        their 3-D point's CT z distance from the target, drive a translation-only
        Gauss-Newton from that round's result. Returns the new ``room_from_ct``; the
        whole-ROI NCC at it replaces ``quality["ncc"]``."""
        ref_pose = refs["room_from_ct"]
        weighted = []
        for r in refs["levels"]["fine"]:
            z_ct = (r.points_room - ref_pose[:3, 3]) @ ref_pose[:3, :3][:, 2]
            wts = np.exp(-0.5 * ((z_ct - self.target_ct_mm[2]) / sigma) ** 2)
            w_ref = RefLevel(r.projection_matrix, r.points_room, r.values, r.gradients,
                             weights=wts)
            w_ref._jac = r._jac  # the same pixels: the same Jacobian
            weighted.append(w_ref)
        cfg = _REFINE["last"]
        rel2, info = gauss_newton(weighted, lives, rel, max_iterations=cfg["max_iterations"],
                                  tol_mm=cfg["tol"], tol_deg=cfg["tol"], huber=self.huber,
                                  method=_GN_METHOD, translation_only=True)
        quality["target_level_shift_mm"] = round(float(np.linalg.norm(
            rel2[:3, 3] - rel[:3, 3])), 4)
        quality["iterations"]["target_level"] = info["iterations"]
        quality["ncc_target_weighted"] = [float(c) for c in info["ncc"]]
        # the verdict judges the whole ROI: its unweighted NCC at the final pose
        quality["ncc"] = [float(c) for c in _evaluate(refs["levels"]["fine"], lives, rel2,
                                                      want_jacobian=False,
                                                      huber=self.huber)[1]]
        return rel2 @ ref_pose

    def _best_pair(self, cands: list[list[tuple[NDArray, float]]]) -> tuple[
            NDArray, float, tuple[float, float]]:
        """Pick one template match per view: the best summed score among pairs whose
        triangulated shifts agree within ``max_disagreement_mm`` (else the most consistent)."""
        ps = np.array([v.projection_matrix for v in self.views])
        best = None
        for s0, c0 in cands[0]:
            for s1, c1 in cands[1]:
                t_mm, res_px = triangulate_shift(ps, self.target_room, np.array([s0, s1]))
                dis = float(np.max([r * v.pixel_spacing_mm / self._mag(v)
                                    for r, v in zip(res_px, self.views, strict=True)]))
                ok = dis <= self.max_disagreement_mm and np.linalg.norm(t_mm) <= self.capture_mm
                key = (ok, c0 + c1 if ok else -dis)
                if best is None or key > best[0]:
                    best = (key, t_mm, dis, (c0, c1))
        assert best is not None
        return best[1], best[2], best[3]

    def _mag(self, view: ViewGeometry) -> float:
        return view.source_to_detector_mm / float(np.linalg.norm(self.target_room
                                                                 - view.source_room))

    def _view_match(self, lives: list[LiveLevel]) -> dict[str, list[float]]:
        """Best NCC template score of each live image against its own view's planned DRR
        and against the other view's (the two default views mirror each other, so the
        other view's DRR is a plausible pattern too; a swapped pair prefers it)."""
        tmpl = self._planned_refs["enhanced"]["coarse"]
        own = [match_template(lv.image, tmpl[k]).score for k, lv in enumerate(lives)]
        crossed = [match_template(lv.image, tmpl[1 - k]).score for k, lv in enumerate(lives)]
        return {"own": [float(x) for x in own], "crossed": [float(x) for x in crossed]}

    def _plausible(self, room_from_ct: NDArray) -> bool:
        motion = room_from_ct @ invert(self.planned_room_from_ct)
        return bool(np.linalg.norm(motion[:3, 3]) <= 2 * self.capture_mm)

    def _verdict(self, motion: NDArray, quality: dict, disagreement: float) -> str:
        pose = pose_from_matrix(motion)
        angle = float(np.degrees(np.arccos(np.clip((np.trace(motion[:3, :3]) - 1) / 2, -1, 1))))
        worst = int(np.argmin(quality["ncc"]))
        if quality["ncc"][worst] < self.min_ncc:
            return (f"similarity too low in view {self.views[worst].name}: NCC "
                    f"{quality['ncc'][worst]:.3f} < {self.min_ncc:.3f}")
        if disagreement > self.max_disagreement_mm:
            return (f"the two views disagree: {disagreement:.1f} mm between their shifts "
                    f"(limit {self.max_disagreement_mm:.1f} mm)")
        if np.linalg.norm(pose[:3]) > self.capture_mm:
            return (f"translation {np.linalg.norm(pose[:3]):.1f} mm beyond the capture range "
                    f"({self.capture_mm:.0f} mm)")
        if angle > self.capture_deg:
            return f"rotation {angle:.1f} deg beyond the capture range ({self.capture_deg} deg)"
        if not quality["converged"]:
            return "optimisation did not converge"
        shift = quality.get("target_level_shift_mm")
        if shift is not None and shift > _TARGET_LEVEL_MAX_SHIFT_MM:
            return (f"the target-level refinement moved the pose {shift:.1f} mm from the "
                    f"whole-ROI optimum (limit {_TARGET_LEVEL_MAX_SHIFT_MM:.1f} mm)")
        match = quality.get("view_match")
        if match is not None and sum(match["crossed"]) > sum(match["own"]):
            return (f"the live images match the other view's DRRs better than their own "
                    f"(template NCC {np.mean(match['crossed']):.2f} vs "
                    f"{np.mean(match['own']):.2f}): views swapped?")
        return "ok"

    def _result(self, motion: NDArray, accepted: bool, reason: str, quality: dict,
                stage: dict, t_start: float) -> RegistrationResult:
        pose = pose_from_matrix(motion)
        return RegistrationResult(pose=pose, room_from_ct=motion @ self.planned_room_from_ct,
                                  accepted=bool(accepted), reason=reason, quality=quality,
                                  elapsed_ms=1e3 * (time.perf_counter() - t_start),
                                  stage_ms=stage)

"""The run's video: the robot rendered headlessly at each joint snapshot, with the beam axis,
the target, a time stamp, the beam's state and a beam's-eye inset drawn on each frame.

Frames come from :meth:`RobotWorld.render_frame` (PyBullet TinyRenderer) with a fixed
camera; the overlay projects room points with the same view and projection matrices
(:func:`camera_matrices`, :func:`project_room`) and draws with OpenCV. The file is MP4
(MPEG-4 Part 2, OpenCV's ``mp4v`` writer) where OpenCV can write one, else an animated GIF
(Pillow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Camera", "FrameState", "VideoFormat", "camera_matrices", "draw_overlay",
           "encode_frames", "frame_state", "mp4_available", "project_room"]

VideoFormat = Literal["auto", "mp4", "gif"]

_M = 1e-3  # metres per mm (PyBullet works in metres)


@dataclass(frozen=True)
class Camera:
    """The video's camera (room mm; room -y is up on screen).

    Attributes
    ----------
    eye_room, look_at_room : tuple of float
        Camera position and the point it looks at (mm).
    fov_deg : float
        Vertical field of view (deg).
    near_m, far_m : float
        Clipping planes (m), as :meth:`RobotWorld.render_frame` uses them.
    """

    eye_room: tuple[float, float, float] = (2600.0, -2200.0, 2400.0)
    look_at_room: tuple[float, float, float] = (0.0, 0.0, 700.0)
    fov_deg: float = 60.0
    near_m: float = 0.05
    far_m: float = 20.0


def camera_matrices(camera: Camera, width: int, height: int
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """PyBullet's view and projection matrices of ``camera`` as 4×4 row-major arrays
    (``clip = proj @ view @ [x_m, y_m, z_m, 1]``, room metres)."""
    from ..robot._pybullet import pb

    view = pb.computeViewMatrix([v * _M for v in camera.eye_room],
                                [v * _M for v in camera.look_at_room], [0.0, -1.0, 0.0])
    proj = pb.computeProjectionMatrixFOV(camera.fov_deg, width / height, camera.near_m,
                                         camera.far_m)
    # PyBullet returns OpenGL's column-major 16-tuples
    return (np.asarray(view, dtype=np.float64).reshape(4, 4).T,
            np.asarray(proj, dtype=np.float64).reshape(4, 4).T)


def project_room(points_room: ArrayLike, view: NDArray[np.float64], proj: NDArray[np.float64],
                 width: int, height: int) -> NDArray[np.float64]:
    """Pixel coordinates ``(col, row)`` of room points (mm) in a ``width``×``height`` frame.

    Parameters
    ----------
    points_room : array-like, shape (n, 3) or (3,)
        Points (room mm).
    view, proj : ndarray, shape (4, 4)
        From :func:`camera_matrices`.

    Returns
    -------
    ndarray, shape (n, 2) (or (2,))
        Column and row of each point (pixel centres at integers + 0.5; row 0 at the top);
        NaN for a point behind the camera.
    """
    p = np.asarray(points_room, dtype=np.float64)
    single = p.ndim == 1
    p = p.reshape(-1, 3)
    h = np.concatenate([p * _M, np.ones((len(p), 1))], axis=1)
    clip = h @ (proj @ view).T
    w = clip[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndc = clip[:, :2] / w[:, None]
    ndc[w <= 0] = np.nan
    out = np.stack([(ndc[:, 0] + 1) / 2 * width, (1 - ndc[:, 1]) / 2 * height], axis=1)
    return out[0] if single else out


@dataclass(frozen=True)
class FrameState:
    """What one frame shows besides the robot (room mm, s)."""

    time_s: float
    duration_s: float
    speedup: float
    source_room: NDArray[np.float64]
    direction_room: NDArray[np.float64]
    target_room: NDArray[np.float64]
    beam_on: bool
    beam: int
    n_beams: int
    holds: tuple[str, ...]
    error_mm: float
    trail_uv_mm: NDArray[np.float64]


def _beam_eye_basis(d: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two unit vectors perpendicular to the beam direction ``d`` (the inset's axes)."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(d, ref)
    u /= np.linalg.norm(u)
    return u, np.cross(d, u)


def frame_state(rec, i: int, *, source_room, direction_room, n_beams: int, speedup: float,
                hold_reasons: tuple[str, ...], trail_s: float = 2.0) -> FrameState:
    """The overlay's content at step ``i`` of ``rec`` (a LoopRecord) with the rendered
    robot's beam axis (``source_room`` mm, unit ``direction_room``)."""
    t = rec.time_s
    d = np.asarray(direction_room, dtype=np.float64)
    u, v = _beam_eye_basis(d)
    a = int(np.searchsorted(t, t[i] - trail_s))
    sel = np.arange(a, i + 1)
    sel = sel[rec.beam_on_s[sel] > 0]
    err = rec.error_vec[sel]
    trail = np.stack([err @ u, err @ v], axis=1) if sel.size else np.zeros((0, 2))
    mask = int(rec.hold_mask[i])
    holds = tuple(name for k, name in enumerate(hold_reasons) if mask >> k & 1)
    return FrameState(
        time_s=float(t[i]), duration_s=float(t[-1]), speedup=speedup,
        source_room=np.asarray(source_room, dtype=np.float64), direction_room=d,
        target_room=np.asarray(rec.target_true[i], dtype=np.float64),
        beam_on=bool(rec.beam_on_s[i] > 0), beam=int(rec.beam_index[i]), n_beams=n_beams,
        holds=holds, error_mm=float(np.linalg.norm(rec.error_vec[i])), trail_uv_mm=trail)


_BEAM_ON = (255, 40, 0)
_BEAM_OFF = (150, 150, 150)
_TARGET = (0, 170, 60)
_TEXT = (20, 20, 20)


def _pt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _status(st: FrameState) -> tuple[str, tuple[int, int, int]]:
    if st.beam_on:
        return f"BEAM ON  beam {st.beam + 1}/{st.n_beams}", _BEAM_ON
    held = [h for h in st.holds if h != "setup"]
    if held:
        return "HOLD: " + ", ".join(held), (200, 0, 0)
    if "setup" in st.holds:
        return "set-up imaging", (90, 90, 90)
    return "beam off (robot moving)", (90, 90, 90)


def _draw_beam(img, st: FrameState, view, proj, scale: float) -> None:
    import cv2

    h, w = img.shape[:2]
    reach = float(np.dot(st.target_room - st.source_room, st.direction_room)) + 250.0
    p = project_room(np.stack([st.source_room, st.source_room + reach * st.direction_room]),
                     view, proj, w, h)
    if np.all(np.isfinite(p)):
        color = _BEAM_ON if st.beam_on else _BEAM_OFF
        thick = max(1, int(round((3 if st.beam_on else 1) * scale)))
        cv2.line(img, _pt(p[0]), _pt(p[1]), color, thick, cv2.LINE_AA)
    q = project_room(st.target_room, view, proj, w, h)
    if np.all(np.isfinite(q)):
        r = max(4, int(round(7 * scale)))
        cv2.circle(img, _pt(q), r, _TARGET, max(1, int(round(2 * scale))), cv2.LINE_AA)
        cv2.putText(img, "target", (_pt(q)[0] + r + 4, _pt(q)[1] + 2 * r + 4),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, _TARGET, 1, cv2.LINE_AA)


def _panel(img, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.8) -> None:
    """Lighten a rectangle of ``img`` toward white (a backdrop for text)."""
    h, w = img.shape[:2]
    x0, x1, y0, y1 = max(0, x0), min(w, x1), max(0, y0), min(h, y1)
    region = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (region * (1 - alpha) + 255 * alpha).astype(np.uint8)


def _draw_text(img, st: FrameState, scale: float) -> None:
    import cv2

    font, s = cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale
    lh = int(round(22 * scale))
    status, color = _status(st)
    lines = [(f"t = {st.time_s:.1f} s of {st.duration_s:.0f} s  ({st.speedup:g}x real time)",
              _TEXT), (status, color)]
    if st.beam_on:
        lines.append((f"targeting error {st.error_mm:.2f} mm", _TEXT))
    width = max(cv2.getTextSize(text, font, s, 1)[0][0] for text, _ in lines)
    _panel(img, 0, 0, int(20 * scale) + width, int(12 * scale) + lh * len(lines))
    for k, (text, col) in enumerate(lines):
        org = (int(10 * scale), int(4 * scale) + lh * (k + 1))
        cv2.putText(img, text, org, font, s, col, 1, cv2.LINE_AA)
    h, w = img.shape[:2]  # progress bar along the bottom
    frac = st.time_s / st.duration_s if st.duration_s > 0 else 1.0
    cv2.rectangle(img, (0, h - 5), (int(w * min(max(frac, 0.0), 1.0)), h - 1), (60, 60, 200),
                  -1)


def _draw_inset(img, st: FrameState, scale: float, range_mm: float = 1.0) -> None:
    """The beam's-eye view: the beam axis at the centre, the target's offset from it (the
    targeting error, ±``range_mm``) and its trail over the last seconds of beam-on time."""
    import cv2

    h, w = img.shape[:2]
    size = int(round(150 * scale))
    x0, y0 = w - size - int(8 * scale), h - size - int(14 * scale)
    cv2.rectangle(img, (x0, y0), (x0 + size, y0 + size), (250, 250, 250), -1)
    cv2.rectangle(img, (x0, y0), (x0 + size, y0 + size), (120, 120, 120), 1)
    c = (x0 + size // 2, y0 + size // 2)
    px_per_mm = (size / 2 - 6) / range_mm
    for r_mm in (0.5, 1.0):
        cv2.circle(img, c, int(r_mm * px_per_mm), (190, 190, 190), 1, cv2.LINE_AA)
    cv2.line(img, (c[0] - 6, c[1]), (c[0] + 6, c[1]), _BEAM_ON, 1)
    cv2.line(img, (c[0], c[1] - 6), (c[0], c[1] + 6), _BEAM_ON, 1)
    pts = np.clip(st.trail_uv_mm, -range_mm, range_mm)
    xy = np.stack([c[0] + pts[:, 0] * px_per_mm, c[1] - pts[:, 1] * px_per_mm], axis=1)
    if len(xy) > 1:
        cv2.polylines(img, [np.round(xy).astype(np.int32)], False, (120, 200, 140), 1,
                      cv2.LINE_AA)
    if st.beam_on and len(xy):
        cv2.circle(img, _pt(xy[-1]), max(3, int(4 * scale)), _TARGET, -1, cv2.LINE_AA)
    font, s = cv2.FONT_HERSHEY_SIMPLEX, 0.38 * scale
    cv2.putText(img, "beam's-eye view", (x0 + 4, y0 + int(13 * scale)), font, s, _TEXT, 1,
                cv2.LINE_AA)
    cv2.putText(img, f"rings 0.5, {range_mm:g} mm", (x0 + 4, y0 + size - 5), font, s,
                (110, 110, 110), 1, cv2.LINE_AA)


def draw_overlay(frame: NDArray[np.uint8], st: FrameState, view, proj) -> NDArray[np.uint8]:
    """``frame`` (RGB, shape (h, w, 3)) with the beam axis, target, text and inset drawn."""
    img = np.ascontiguousarray(frame.copy())
    scale = img.shape[0] / 480.0
    _draw_beam(img, st, view, proj, scale)
    _draw_text(img, st, scale)
    _draw_inset(img, st, scale)
    return img


def mp4_available() -> bool:
    """Whether OpenCV can write an MP4 (``mp4v``) here."""
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as d:
        w = cv2.VideoWriter(str(Path(d) / "probe.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0,
                            (64, 48))
        ok = w.isOpened()
        w.release()
    return ok


def encode_frames(frames, path_stem: Path, *, size: tuple[int, int], fps: float,
                  fmt: VideoFormat = "auto") -> Path:
    """Write RGB ``frames`` (an iterable of (h, w, 3) uint8) as ``path_stem`` + ``.mp4`` (or
    ``.gif``); returns the path written. ``fmt="auto"``: MP4 when OpenCV can write one."""
    if fmt not in ("auto", "mp4", "gif"):
        raise ValueError(f"fmt must be one of auto, mp4, gif (got {fmt!r})")
    stem = Path(path_stem).with_suffix("")
    if fmt == "mp4" or (fmt == "auto" and mp4_available()):
        import cv2

        path = stem.with_suffix(".mp4")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write an MP4 video to {path}")
        try:
            for f in frames:
                writer.write(np.ascontiguousarray(f[:, :, ::-1]))  # RGB -> BGR
        finally:
            writer.release()
        return path
    from PIL import Image

    path = stem.with_suffix(".gif")
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:],
                   duration=max(20, int(round(1000 / fps))), loop=0)
    return path

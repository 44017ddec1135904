"""Vertebral levels: names, order and approximate adult dimensions (mm).

Dimensions are smooth fits to published adult means (thoracic and lumbar vertebral body
width, depth and height grow roughly linearly from T1 to L5; discs are thin in the thorax
and thicker in the lumbar spine). They are plausible, not patient-specific.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEVELS", "LevelDims", "level_dims", "level_index", "level_range"]

LEVELS: tuple[str, ...] = tuple(f"T{n}" for n in range(1, 13)) + tuple(
    f"L{n}" for n in range(1, 6))
"""Supported vertebra labels from cranial to caudal."""


@dataclass(frozen=True)
class LevelDims:
    """Approximate dimensions of one vertebra (mm) in its local frame.

    ``width`` is left-right, ``depth`` antero-posterior, ``height`` cranio-caudal (body);
    ``disc_below`` the height of the disc under the body; ``canal_w``/``canal_d`` the
    spinal canal's width and depth; ``spinous_len``/``spinous_deg`` the spinous process
    length and its slope below horizontal; ``tp_reach`` the lateral reach of a transverse
    process tip from the midline.
    """

    label: str
    thoracic: bool
    width: float
    depth: float
    height: float
    disc_below: float
    canal_w: float
    canal_d: float
    spinous_len: float
    spinous_deg: float
    spinous_rz: float
    tp_reach: float
    tp_radius: float


def level_index(label: str) -> int:
    """1-based position of ``label`` in :data:`LEVELS` (T1 = 1, L1 = 13); ValueError if unknown."""
    try:
        return LEVELS.index(label) + 1
    except ValueError:
        raise ValueError(f"unknown vertebra level {label!r}; allowed: "
                         f"{', '.join(LEVELS)}") from None


def level_range(top: str, bottom: str) -> tuple[str, ...]:
    """Labels from ``top`` down to ``bottom`` inclusive (cranial first)."""
    a, b = level_index(top), level_index(bottom)
    if b < a:
        raise ValueError(f"level range {top}..{bottom} runs upward; give the cranial level first")
    return LEVELS[a - 1:b]


def level_dims(label: str) -> LevelDims:
    """Approximate dimensions of vertebra ``label`` (see the module docstring)."""
    n = level_index(label)
    thoracic = n <= 12
    lum = max(0, n - 12)  # 1 for L1 ...
    return LevelDims(
        label=label,
        thoracic=thoracic,
        width=22.0 + 1.45 * n,
        depth=17.0 + 1.2 * n,
        height=13.5 + 0.85 * n,
        disc_below=(3.6 + 0.25 * n) if n < 12 else 7.0 + 1.0 * lum,
        canal_w=15.5 + (0.0 if thoracic else 4.0 + 0.8 * lum),
        canal_d=14.0 + (0.0 if thoracic else 1.5),
        spinous_len=(34.0 if thoracic else 30.0),
        spinous_deg=(58.0 - 3.5 * max(0, n - 6) if thoracic else 12.0),
        spinous_rz=(5.0 if thoracic else 9.0),
        tp_reach=(42.0 - 2.0 * max(0, n - 8) if thoracic else 38.0 + 2.0 * lum),
        tp_radius=(5.0 if thoracic else 3.8),
    )

"""Colours shared by the PNG plots and the interactive ones (one colour per thing)."""

from __future__ import annotations

__all__ = ["COMPONENT_COLORS", "HOLD_COLORS", "XRAY_COLORS", "hold_color"]

COMPONENT_COLORS = {"registration": "#1f77b4", "correlation": "#ff7f0e",
                    "prediction": "#2ca02c", "robot": "#d62728"}
"""Error component → colour (matplotlib's tab10)."""

HOLD_COLORS = {"setup": "#7f7f7f", "registration_failed": "#d62728",
               "correction_limit": "#9467bd", "model_residual": "#8c564b",
               "outside_model_range": "#ff7f0e", "markers_lost": "#e377c2",
               "patient_moved": "#bcbd22", "robot_following": "#17becf"}
"""Interlock (``HOLD_REASONS``) → colour of its hold bands."""

XRAY_COLORS = {True: "#1f77b4", False: "#d62728"}
"""X-ray pair accepted / rejected → colour of its mark."""


def hold_color(reasons: tuple[str, ...] | list[str]) -> str:
    """The colour of a hold band: its first reason's (grey for an unknown one)."""
    return HOLD_COLORS.get(reasons[0], "#7f7f7f") if reasons else "#7f7f7f"

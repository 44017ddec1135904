"""The truth patient: what the live X-ray images see, kept apart from the planning CT that
registration uses (DESIGN.md, imaging realism)."""

from ._particles import MATERIALS, ParticleSet

__all__ = ["MATERIALS", "ParticleSet"]

"""Anatomy: the CT volume type, file readers/writers and the procedural spine phantom."""

from .volume import Volume

__all__ = ["Volume"]

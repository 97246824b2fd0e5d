"""Tracks -> correspondences -> pycolmap mapping and bundle adjustment -> Scene."""

from cotracker3_plugin.reconstruct.scene import Scene

__all__ = ["Scene"]

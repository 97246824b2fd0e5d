"""Tracks -> correspondences -> pycolmap mapping and bundle adjustment -> Scene.

Public API: :class:`ReconstructConfig`, :func:`reconstruct`, :func:`write_colmap_model`,
:func:`write_ply` and the :class:`Scene` type.
"""

from cotracker3_plugin.reconstruct.export import write_colmap_model, write_ply
from cotracker3_plugin.reconstruct.scene import Scene

__all__ = ["Scene", "write_colmap_model", "write_ply"]

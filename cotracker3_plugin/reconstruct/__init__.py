"""Tracks -> correspondences -> pycolmap mapping and bundle adjustment -> Scene.

Public API: :class:`ReconstructConfig`, :func:`reconstruct` (and
:func:`reconstruct_detailed`, which also returns a report), :func:`write_colmap_model`,
:func:`write_ply` and the :class:`Scene` type.
"""

from cotracker3_plugin.reconstruct.export import write_colmap_model, write_ply
from cotracker3_plugin.reconstruct.pipeline import (
    ReconstructConfig,
    ReconstructReport,
    ReconstructResult,
    reconstruct,
    reconstruct_detailed,
)
from cotracker3_plugin.reconstruct.scene import Scene

__all__ = ["ReconstructConfig", "ReconstructReport", "ReconstructResult", "Scene", "reconstruct",
           "reconstruct_detailed", "write_colmap_model", "write_ply"]

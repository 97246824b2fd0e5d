"""cotracker3-plugin: CoTracker3 point tracks for nerfstudio, COLMAP and viser.

The data flow is one direction: ``Clip`` (io) -> ``Tracks`` (predict) -> ``Scene``
(reconstruct) -> exports / viewer::

    import cotracker3_plugin as ct

    clip = ct.load_clip("video.mp4", max_side=640)
    tracks = ct.track(clip, ct.load_model())       # the bundled model by default
    scene = ct.reconstruct(tracks, clip)
    ct.write_colmap_model(scene, "out/colmap")      # or the nerfstudio dataset:
    # from cotracker3_nerfstudio import process_data; process_data(clip, "out", tracker=tracks, scene=scene)
    # from cotracker3_viser import show; show(clip, tracks, scene)

Importing this module is cheap: torch, pycolmap and friends load on first use of the
names below. nerfstudio and viser are never imported by the core.
"""

from __future__ import annotations

import importlib
from typing import Any

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.tracks import Tracks

__version__ = "0.1.0"

#: public name -> module that defines it (imported lazily)
_LAZY = {
    "load_clip": "cotracker3_plugin.io",
    "read_video": "cotracker3_plugin.io",
    "iter_frames": "cotracker3_plugin.io",
    "write_overlay": "cotracker3_plugin.io",
    "load_model": "cotracker3_plugin.weights",
    "resolve_device": "cotracker3_plugin.device",
    "save_checkpoint": "cotracker3_plugin.weights",
    "track": "cotracker3_plugin.predict",
    "sharpen_tracks": "cotracker3_plugin.refine",
    "OnlineSession": "cotracker3_plugin.predict",
    "reconstruct": "cotracker3_plugin.reconstruct",
    "ReconstructConfig": "cotracker3_plugin.reconstruct",
    "Scene": "cotracker3_plugin.reconstruct",
    "write_colmap_model": "cotracker3_plugin.reconstruct",
    "write_ply": "cotracker3_plugin.reconstruct",
}

__all__ = ["Clip", "Tracks", "UserError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cotracker3_plugin' has no attribute {name!r}")

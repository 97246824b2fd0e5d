"""cotracker3-plugin: CoTracker3 point tracks for nerfstudio, COLMAP and viser.

The data flow is one direction: ``Clip`` (io) -> ``Tracks`` (predict) -> ``Scene``
(reconstruct) -> exports / viewer. This module imports no torch, nerfstudio or viser;
the heavy parts load on first use.
"""

from __future__ import annotations

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.tracks import Tracks

__version__ = "0.1.0"
__all__ = ["Clip", "Tracks", "UserError", "__version__"]

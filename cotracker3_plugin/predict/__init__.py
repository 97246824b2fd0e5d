"""Predictors: CoTracker3 on a clip (:func:`track`) or a live stream (:class:`OnlineSession`).

Coordinates are pixels of the input, x right, y down; queries are ``(t, x, y)``.
Both reproduce the official ``CoTrackerPredictor`` / ``CoTrackerOnlinePredictor`` (resize
to the model resolution with corner-aligned scaling, 6 iterations, the 6x6 support grid for
explicit queries, backward tracking, query-point correction); ``rule="official"`` also gives
their visibility rules, ``rule="package"`` the package's ``vis * conf > 0.6``.
"""

from cotracker3_plugin.predict.api import track
from cotracker3_plugin.predict.grid import grid_points
from cotracker3_plugin.predict.session import OnlineSession

__all__ = ["OnlineSession", "grid_points", "track"]

"""CoTracker3 networks (offline and online) with the official state-dict layout.

>>> from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline
>>> model = CoTrackerThreeOffline(CoTrackerConfig.offline()).eval()
>>> coords, vis, conf, _ = model(video, queries, iters=6)  # doctest: +SKIP
"""

from cotracker3_plugin.model.config import CoTrackerConfig
from cotracker3_plugin.model.cotracker3 import (
    CoTrackerThreeBase,
    CoTrackerThreeOffline,
    CoTrackerThreeOnline,
    count_parameters,
)

__all__ = [
    "CoTrackerConfig",
    "CoTrackerThreeBase",
    "CoTrackerThreeOffline",
    "CoTrackerThreeOnline",
    "count_parameters",
]

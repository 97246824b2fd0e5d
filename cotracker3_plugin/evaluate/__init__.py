"""Evaluation: TAP-Vid metrics and readers, the official evaluation protocol, BADJA scoring,
the KLT baseline and the real-image benchmark maker.

Coordinates are pixels, x right, y down; tracker queries are ``(t, x, y)`` (TAP-Vid stores
``(t, y, x)``; :class:`TapVidSample` gives both).
"""

from cotracker3_plugin.evaluate.badja import BadjaSequence, Tracker, evaluate_badja, load_badja, score_badja
from cotracker3_plugin.evaluate.klt import KLTTracker, klt_track
from cotracker3_plugin.evaluate.make_benchmark import BenchmarkConfig, make_benchmark, write_benchmark
from cotracker3_plugin.evaluate.metrics import compute_tapvid_metrics
from cotracker3_plugin.evaluate.runner import ModelTracker, evaluate_tapvid
from cotracker3_plugin.evaluate.tapvid import TapVidSample, iter_tapvid

__all__ = [
    "BadjaSequence",
    "BenchmarkConfig",
    "KLTTracker",
    "ModelTracker",
    "TapVidSample",
    "Tracker",
    "compute_tapvid_metrics",
    "evaluate_badja",
    "evaluate_tapvid",
    "iter_tapvid",
    "klt_track",
    "load_badja",
    "make_benchmark",
    "score_badja",
    "write_benchmark",
]

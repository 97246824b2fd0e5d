"""Readers for the official TAP-Vid pickle layouts and the TAP-Vid query protocols.

Layouts (each entry is ``{"video", "points", "occluded"}``):

- DAVIS: one pickle holding a dict ``video name → entry``;
- RGB-Stacking: one pickle holding a list of entries (the index is the name);
- Kinetics: a folder of ``*_of_0010.pkl`` shards, each a list of entries;
- RoboTAP: a folder of ``robotap_split*.pkl`` files, each a dict;
- our ``make-benchmark`` output: like DAVIS.

``video`` is a (T, H, W, 3) uint8 array or a list of JPEG bytes per frame; ``points`` (N, T, 2)
``(x, y)`` normalised to [0, 1]; ``occluded`` (N, T) bool. As the official evaluation does,
videos are resized to 256×256 and points multiplied by 256−1, so metrics are in 256-pixel
units. Query points come out as ``(t, y, x)`` (the TAP-Vid order); trackers take ``(t, x, y)``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cotracker3_plugin.errors import UserError

EVAL_SIZE = 256


@dataclass
class TapVidSample:
    """One video ready for evaluation, in 256×256 pixels."""

    name: str
    video: np.ndarray
    """(T, 256, 256, 3) uint8 RGB."""
    query_points: np.ndarray
    """(Q, 3) ``(t, y, x)``: one row per query (a track can give several in strided mode)."""
    target_points: np.ndarray
    """(Q, T, 2) ground-truth ``(x, y)`` of each query's track."""
    occluded: np.ndarray
    """(Q, T) bool ground-truth occlusion."""

    @property
    def queries_txy(self) -> np.ndarray:
        """(Q, 3) ``(t, x, y)``, the order trackers take."""
        return self.query_points[:, [0, 2, 1]]


def decode_frames(video) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB from an array or a list of JPEG/PNG bytes (decoded with OpenCV)."""
    if len(video) and isinstance(video[0], (bytes, bytearray, np.bytes_)):
        frames = []
        for i, buf in enumerate(video):
            img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise UserError(f"Frame {i} of a TAP-Vid video is not a decodable image; "
                                "the pickle is corrupt: download it again.")
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return np.stack(frames)
    frames = np.asarray(video)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise UserError(f"A TAP-Vid video has shape {frames.shape}, expected (T, H, W, 3); "
                        "check that the file is a TAP-Vid pickle.")
    return frames.astype(np.uint8, copy=False)


def resize_video(frames: np.ndarray, size: tuple[int, int] = (EVAL_SIZE, EVAL_SIZE)) -> np.ndarray:
    """Resize every frame to ``size`` = (H, W).

    The official loader uses mediapy (PIL Lanczos, antialiased); OpenCV's area filter when
    shrinking and Lanczos when enlarging come close without another dependency.
    """
    H, W = size
    if frames.shape[1:3] == (H, W):
        return frames
    shrink = frames.shape[1] > H or frames.shape[2] > W
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
    return np.stack([cv2.resize(f, (W, H), interpolation=interp) for f in frames])


def sample_queries_first(occluded: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One query per track at its first visible frame; tracks never visible are dropped.

    Returns query_points (Q, 3) ``(t, y, x)``, target_points (Q, T, 2), occluded (Q, T).
    """
    valid = (~occluded).any(axis=1)
    points, occluded = points[valid], occluded[valid]
    t = np.argmax(~occluded, axis=1)
    xy = points[np.arange(len(t)), t]
    queries = np.stack([t.astype(points.dtype), xy[:, 1], xy[:, 0]], axis=1)
    return queries.reshape(-1, 3), points, occluded


def sample_queries_strided(
    occluded: np.ndarray, points: np.ndarray, stride: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A query for every track visible at frames 0, stride, 2·stride, … (rows repeat tracks)."""
    qs, ps, os_ = [], [], []
    for i in range(0, occluded.shape[1], stride):
        vis = ~occluded[:, i]
        t = np.full(int(vis.sum()), float(i), dtype=points.dtype)
        qs.append(np.stack([t, points[vis, i, 1], points[vis, i, 0]], axis=1))
        ps.append(points[vis])
        os_.append(occluded[vis])
    T = occluded.shape[1]
    if not qs:
        return np.zeros((0, 3)), np.zeros((0, T, 2)), np.zeros((0, T), bool)
    return np.concatenate(qs), np.concatenate(ps), np.concatenate(os_)


def make_sample(name: str, entry: dict, query_mode: str, size: int = EVAL_SIZE) -> TapVidSample:
    """Decode, resize and query one raw TAP-Vid entry."""
    frames = resize_video(decode_frames(entry["video"]), (size, size))
    points = np.asarray(entry["points"], dtype=np.float64) * (size - 1)
    occluded = np.asarray(entry["occluded"], dtype=bool)
    if query_mode == "first":
        q, p, o = sample_queries_first(occluded, points)
    elif query_mode == "strided":
        q, p, o = sample_queries_strided(occluded, points)
    else:
        raise UserError(f"Unknown query mode {query_mode!r}: use --mode first or --mode strided.")
    return TapVidSample(str(name), frames, q, p, o)


def _load_pickle(path: Path):
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
        raise UserError(f"{path} is not a readable TAP-Vid pickle ({e}). Download it again or "
                        "pass the right file.") from e


def _entries(obj, prefix: str = "") -> Iterator[tuple[str, dict]]:
    if isinstance(obj, dict) and not {"video", "points", "occluded"} <= set(obj):
        for k, v in obj.items():
            yield f"{prefix}{k}", v
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield f"{prefix}{i}", v
    else:
        raise UserError("The pickle holds neither a dict of videos nor a list of videos; "
                        "is it a TAP-Vid file?")


def iter_tapvid_entries(path: str | Path) -> Iterator[tuple[str, dict]]:
    """Raw ``(name, entry)`` pairs from a TAP-Vid pickle or a folder of shards, lazily per file.

    A folder is read as Kinetics (``*_of_0010.pkl``, lists, names continue across shards as
    the official loader's concatenation does) or RoboTAP (``robotap_split*.pkl``, dicts).
    """
    path = Path(path)
    if path.is_file():
        yield from _entries(_load_pickle(path))
        return
    if not path.is_dir():
        raise UserError(f"TAP-Vid data {path} does not exist. Pass the .pkl file (DAVIS, RGB-Stacking, "
                        "make-benchmark) or the folder of shards (Kinetics, RoboTAP).")
    kinetics = sorted(path.glob("*_of_0010.pkl"))
    robotap = sorted(path.glob("robotap_split*.pkl"))
    if kinetics:
        index = 0
        for shard in kinetics:
            for _, entry in _entries(_load_pickle(shard)):
                yield str(index), entry
                index += 1
    elif robotap:
        for shard in robotap:
            yield from _entries(_load_pickle(shard))
    else:
        pkls = sorted(path.glob("*.pkl"))
        if len(pkls) != 1:
            raise UserError(f"{path} holds no Kinetics shards (*_of_0010.pkl), no RoboTAP splits "
                            "(robotap_split*.pkl) and not exactly one .pkl; pass the pickle file itself.")
        yield from _entries(_load_pickle(pkls[0]))


def iter_tapvid(
    path: str | Path, query_mode: str = "first", max_videos: int | None = None
) -> Iterator[TapVidSample]:
    """Evaluation samples (256×256, queries per ``query_mode``) from a TAP-Vid file or folder."""
    for i, (name, entry) in enumerate(iter_tapvid_entries(path)):
        if max_videos is not None and i >= max_videos:
            return
        yield make_sample(name, entry, query_mode)

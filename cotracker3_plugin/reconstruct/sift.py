"""SIFT feature tracks from COLMAP's own extractor and matcher (pycolmap), as :class:`Tracks`.

Why: a video tracker chains each point from frame to frame, so its small errors add up over
wide baselines (photo sets: Strecha castle-P30 bends by 13 degrees with tracks alone), and a
coarse tracker loses frames across fast motion. SIFT matches every frame pair afresh. The
two complement each other: tracks are long and survive blur and low texture, SIFT matches
are short but independent per pair. Putting SIFT matches in the same :class:`Tracks` form
means every later stage (moving-object rejection, mapping, triangulation, bundle
adjustment) treats both alike.

A feature track is a connected component of the verified matches (the same notion as
COLMAP's own correspondence graph); components that hold two keypoints of one frame are
ambiguous and dropped.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from cotracker3_plugin.reconstruct.mapping import COLMAP_PIXEL_OFFSET, quiet_colmap
from cotracker3_plugin.tracks import Tracks

log = logging.getLogger(__name__)

__all__ = ["SiftMatching", "sift_tracks"]

SiftMatching = Literal["auto", "sequential", "exhaustive"]
#: ``auto`` matches all pairs up to this many frames (1225 pairs), else sequentially.
EXHAUSTIVE_MAX_FRAMES = 50
#: Cap on frames x feature tracks: the arrays are dense (T, N), about 13 bytes a cell (~65 MB), and copies of
#: them pass through every later stage. It binds only on long videos (3000 frames: 1666 tracks).
MAX_TRACK_CELLS = 5_000_000


def _match(db: Path, matching: SiftMatching, num_frames: int, num_threads: int, seed: int) -> str:
    import pycolmap

    if matching == "auto":
        matching = "exhaustive" if num_frames <= EXHAUSTIVE_MAX_FRAMES else "sequential"
    mopts = pycolmap.FeatureMatchingOptions()
    mopts.num_threads = int(num_threads)
    vopts = pycolmap.TwoViewGeometryOptions()
    vopts.ransac.random_seed = int(seed)  # COLMAP's default (-1) seeds from the clock
    if matching == "exhaustive":
        pycolmap.match_exhaustive(db, matching_options=mopts, verification_options=vopts,
                                  device=pycolmap.Device.cpu)
    elif matching == "sequential":
        # Each frame with the next 10, and with frames 2^k ahead (COLMAP's quadratic overlap).
        pycolmap.match_sequential(db, matching_options=mopts, verification_options=vopts,
                                  device=pycolmap.Device.cpu)
    else:
        raise ValueError(f"unknown SIFT matching {matching!r}")
    return matching


def sift_tracks(frames: np.ndarray, *, frame_indices: np.ndarray | None = None, num_frames: int | None = None,
                matching: SiftMatching = "auto", max_features: int = 4096, num_threads: int = -1,
                max_cells: int = MAX_TRACK_CELLS, seed: int = 0, workdir: str | Path | None = None) -> Tracks:
    """Feature tracks over ``num_frames`` frames from SIFT matches between ``frames``.

    ``frames`` (F, H, W, 3) uint8 RGB are frames ``frame_indices`` (default ``0..F-1``) of a
    clip of ``num_frames`` (default F) frames; the tracks are visible only there. Matching is
    ``exhaustive`` (all pairs), ``sequential`` (neighbours), or ``auto`` (exhaustive up to
    :data:`EXHAUSTIVE_MAX_FRAMES` frames). Longest tracks are kept first when
    ``num_frames * tracks`` would exceed ``max_cells``. Confidence is 1 where visible;
    ``meta["model"]`` is ``"sift"``. ``seed`` seeds the two-view verification: with ``num_threads=1`` the
    same frames give the same tracks; with more threads a few matches can differ between runs (COLMAP
    seeds a generator per thread, and which thread verifies which pair varies).
    """
    import cv2
    import pycolmap
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    frames = np.asarray(frames)
    F, H, W = frames.shape[:3]
    T = F if num_frames is None else int(num_frames)
    where = np.arange(F) if frame_indices is None else np.asarray(frame_indices, dtype=np.int64)
    if len(where) != F or (F and (where.min() < 0 or where.max() >= T)):
        raise ValueError(f"frame_indices must give {F} frame numbers in [0, {T})")
    names = [f"{i:06d}.png" for i in range(F)]
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="cotracker3-sift-"))
        work = Path(workdir)
        (work / "images").mkdir(parents=True, exist_ok=True)
        for name, frame in zip(names, frames):
            # cv2.imwrite only returns False (e.g. a full temp disk); a missing frame would go unnoticed.
            if not cv2.imwrite(str(work / "images" / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                raise OSError(f"could not write the SIFT input frame {work / 'images' / name}")
        db = work / "sift.db"
        db.unlink(missing_ok=True)
        eopts = pycolmap.FeatureExtractionOptions()
        eopts.sift.max_num_features = int(max_features)
        eopts.num_threads = int(num_threads)
        with quiet_colmap():
            pycolmap.extract_features(db, work / "images", image_names=names,
                                      camera_mode=pycolmap.CameraMode.SINGLE, extraction_options=eopts,
                                      device=pycolmap.Device.cpu)
            used = _match(db, matching, F, num_threads, seed)
        handle = pycolmap.Database.open(str(db))
        try:
            frame_of_name = {name: f for f, name in enumerate(names)}
            frame_of_image = {im.image_id: frame_of_name[im.name] for im in handle.read_all_images()}
            keypoints = [np.zeros((0, 2))] * F
            for image_id, f in frame_of_image.items():
                keypoints[f] = np.asarray(handle.read_keypoints(image_id))[:, :2] - COLMAP_PIXEL_OFFSET
            offsets = np.concatenate([[0], np.cumsum([len(k) for k in keypoints])])
            edges = []
            pair_ids, geometries = handle.read_two_view_geometries()
            for pair_id, geometry in zip(pair_ids, geometries):
                a, b = pycolmap.pair_id_to_image_pair(pair_id)
                m = np.asarray(geometry.inlier_matches, dtype=np.int64).reshape(-1, 2)
                if len(m):
                    edges.append(np.stack([m[:, 0] + offsets[frame_of_image[a]],
                                           m[:, 1] + offsets[frame_of_image[b]]], axis=1))
        finally:
            handle.close()

    n_kp = int(offsets[-1])
    edges_all = np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges_all)), (edges_all[:, 0], edges_all[:, 1])), shape=(n_kp, n_kp))
    _, component = connected_components(graph, directed=False)
    frame_of_kp = np.repeat(np.arange(F), np.diff(offsets))
    size = np.bincount(component, minlength=component.max() + 1 if n_kp else 0)
    # Two keypoints of one frame in a component: an ambiguous chain of matches.
    per_frame = np.unique(component * F + frame_of_kp, return_counts=True)
    ambiguous = np.zeros(len(size), dtype=bool)
    ambiguous[per_frame[0][per_frame[1] > 1] // F] = True
    good = np.flatnonzero((size >= 2) & ~ambiguous)
    limit = max(1, int(max_cells) // max(T, 1))
    if len(good) > limit:
        good = good[np.argsort(-size[good], kind="stable")[:limit]]
    column = np.full(len(size), -1, dtype=np.int64)
    column[good] = np.arange(len(good))
    N = len(good)
    xy = np.zeros((T, N, 2), dtype=np.float32)
    visible = np.zeros((T, N), dtype=bool)
    kp_xy = np.concatenate(keypoints) if n_kp else np.zeros((0, 2))
    keep = column[component] >= 0 if n_kp else np.zeros(0, dtype=bool)
    rows, cols = where[frame_of_kp[keep]], column[component[keep]]
    xy[rows, cols] = kp_xy[keep]
    visible[rows, cols] = True
    first = visible.argmax(0)
    queries = np.concatenate([first[:, None], xy[first, np.arange(N)]], axis=1)
    log.info("SIFT (%s matching, %d frames): %d feature tracks, %.1f frames each (%d ambiguous dropped)",
             used, F, N, visible.sum() / max(N, 1), int(ambiguous.sum()))
    return Tracks(xy, visible, visible.astype(np.float32), queries, (H, W), meta={"model": "sift"})

"""Scene exports: a COLMAP sparse model (``cameras/images/points3D``) and a coloured PLY.

Both writers are atomic: the COLMAP model is written into a temporary folder and
renamed, the PLY into a temporary file and renamed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cotracker3_plugin._atomic import atomic_path
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.tracks import Tracks

__all__ = ["default_image_names", "scene_to_pycolmap", "write_colmap_model", "write_ply", "write_points_ply"]


def default_image_names(num_frames: int) -> list[str]:
    """``frame_00001.png`` ... (1-based), the names nerfstudio's processors give extracted frames."""
    return [f"frame_{i + 1:05d}.png" for i in range(num_frames)]


#: COLMAP puts pixel centres at +0.5, this package at integer coordinates.
_COLMAP_OFFSET = 0.5


def _camera_model(scene: Scene, k: np.ndarray) -> tuple[str, list[float]]:
    fx, fy = float(k[0, 0]), float(k[1, 1])
    cx, cy = float(k[0, 2]) + _COLMAP_OFFSET, float(k[1, 2]) + _COLMAP_OFFSET
    dist = np.asarray(scene.distortion, dtype=np.float64).reshape(-1)
    if dist.size == 0 or not np.any(dist):
        return "PINHOLE", [fx, fy, cx, cy]
    d = np.zeros(4)
    d[: min(4, dist.size)] = dist[:4]
    return "OPENCV", [fx, fy, cx, cy, *map(float, d)]


def scene_to_pycolmap(scene: Scene, image_names: Sequence[str] | None = None,
                      tracks: Tracks | None = None):
    """Build a ``pycolmap.Reconstruction`` holding the registered frames and the points.

    With ``tracks`` (the ``Tracks`` the scene's ``track_ids`` index: ``ReconstructResult.tracks``),
    every point gets its observations: the frames where its track is visible (2D positions from the track),
    so that COLMAP tools and depth-supervised trainers see real point tracks. Without
    it the points carry no observations.
    """
    import pycolmap

    t = scene.num_frames
    names = list(image_names) if image_names is not None else default_image_names(t)
    if len(names) != t:
        raise ValueError(f"image_names has {len(names)} names for a scene of {t} frames")
    h, w = scene.image_size
    rec = pycolmap.Reconstruction()
    for c in range(len(scene.intrinsics)):
        model, params = _camera_model(scene, scene.intrinsics[c])
        rec.add_camera_with_trivial_rig(
            pycolmap.Camera(model=model, width=int(w), height=int(h), params=params, camera_id=c + 1))

    reg = np.flatnonzero(scene.registered)
    # Per registered frame: which tracks are observed there, and where (keypoint index).
    obs_of_frame: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if tracks is not None and len(scene.track_ids):
        # Points of tracks that ``tracks`` lacks (e.g. SIFT feature tracks when only the tracker's are
        # passed: pass ReconstructResult.tracks) get no observations.
        known = (scene.track_ids >= 0) & (scene.track_ids < tracks.num_points)
        tids = np.where(known, scene.track_ids, 0)
        for i in reg:
            fi = int(scene.frame_indices[i])
            vis = tracks.visible[fi, tids] & known
            pidx = np.flatnonzero(vis)
            obs_of_frame[i] = (pidx, tracks.xy[fi, tids[pidx]].astype(np.float64) + _COLMAP_OFFSET)
    for i in reg:
        cam_from_world = np.linalg.inv(scene.world_from_cam[i])
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(cam_from_world[:3, :3]), cam_from_world[:3, 3])
        kps = obs_of_frame.get(i, (None, np.zeros((0, 2))))[1]
        image = pycolmap.Image(name=names[i], keypoints=kps,
                               camera_id=int(scene.camera_index[i]) + 1, image_id=int(i) + 1)
        rec.add_image_with_trivial_frame(image, pose)

    # Observation lists per point: (image_id, keypoint index).
    per_point: list[list[tuple[int, int]]] = [[] for _ in range(len(scene.points))]
    for i, (pidx, _) in obs_of_frame.items():
        for k, p in enumerate(pidx.tolist()):
            per_point[p].append((int(i) + 1, k))
    for p in range(len(scene.points)):
        track = pycolmap.Track()
        for image_id, k in per_point[p]:
            track.add_element(image_id, k)
        rec.add_point3D(scene.points[p], track, scene.colors[p])
    return rec


def write_colmap_model(scene: Scene, folder: str | os.PathLike[str], binary: bool = True, *,
                       image_names: Sequence[str] | None = None,
                       tracks: Tracks | None = None) -> Path:
    """Write ``cameras``, ``images`` and ``points3D`` (``.bin`` or ``.txt``) into ``folder``.

    Readable by COLMAP, ``pycolmap.Reconstruction(folder)`` and nerfstudio. The camera
    is PINHOLE when the scene has no distortion, else OPENCV; principal point and
    keypoints are shifted by +0.5 px to COLMAP's pixel-centre convention. Only registered frames
    become images; image ``i`` of the scene gets image id ``i + 1`` and the name
    ``image_names[i]`` (default ``frame_00001.png`` ...). Pass ``tracks`` to give the
    points their 2D observations (see :func:`scene_to_pycolmap`). ``folder`` is replaced
    atomically if it exists.
    """
    folder = Path(folder)
    rec = scene_to_pycolmap(scene, image_names=image_names, tracks=tracks)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        if binary:
            rec.write_binary(str(tmp))
        else:
            rec.write_text(str(tmp))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_ply(scene: Scene, path: str | os.PathLike[str]) -> Path:
    """Write the scene's points as a binary little-endian PLY (float xyz, uchar rgb)."""
    return write_points_ply(scene.points, scene.colors, path)


def write_points_ply(points: np.ndarray, colors: np.ndarray, path: str | os.PathLike[str], *,
                     transform: np.ndarray | None = None) -> Path:
    """Write (P, 3) points with (P, 3) uint8 colours as a binary little-endian PLY, atomically.

    ``transform`` ((3, 4) or (4, 4)) maps the points first: nerfstudio reads the PLY named by
    ``ply_file_path`` in the world of its ``transforms.json``, which is the reconstruction's
    world after ``applied_transform``. Non-finite points are left out.
    """
    path = Path(path)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if transform is not None:
        m = np.asarray(transform, dtype=np.float64)
        pts = pts @ m[:3, :3].T + m[:3, 3]
    cols = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    keep = np.all(np.isfinite(pts), axis=1)
    pts, cols = pts[keep], cols[keep]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by cotracker3-plugin\n"
        f"element vertex {len(pts)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    rec = np.empty(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                     ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    rec["r"], rec["g"], rec["b"] = cols[:, 0], cols[:, 1], cols[:, 2]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return path

"""A TAP-Vid-format benchmark with exact ground truth, made from real images.

Each video looks at one real image (a video frame, a fox photo or a Strecha photo: the
*canvas*) through a virtual camera that moves smoothly: rotation, zoom, translation and a
little perspective, i.e. one homography ``H_t`` (canvas → frame) per frame. A tracked point
is a canvas point ``X``; its position in frame ``t`` is ``H_t X``, exactly. Real-image
occluders (patches cut from *other* source images, binary masks) slide over the frames;
a point is occluded where an occluder's mask covers its nearest pixel or where it lies
outside the frame. Everything is drawn from one seed, so the set is reproducible.

Output layout (``write_benchmark``):

- ``benchmark.pkl``: dict name → ``{"video": (T,H,W,3) uint8, "points": (N,T,2) float32
  (x, y) / (size − 1), "occluded": (N,T) bool}`` — the TAP-Vid DAVIS layout, readable by
  :func:`cotracker3_plugin.evaluate.tapvid.iter_tapvid`;
- ``benchmark.npz``: the same plus ``<name>/homographies`` (T,3,3), ``<name>/canvas_points``
  (N,2) and ``<name>/points_px`` (N,T,2) pixel coordinates;
- ``meta.json``: the configuration and the source of every canvas and occluder.

Coordinates are pixels, x right, y down, pixel centres at integers.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cotracker3_plugin._atomic import atomic_dir
from cotracker3_plugin.errors import UserError

log = logging.getLogger(__name__)

_VIDEO_EXT = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
_IMAGE_EXT = {".jpg", ".jpeg", ".png"}


@dataclass
class BenchmarkConfig:
    """How to make the benchmark."""

    seed: int = 0
    """Seed for every random choice; the same seed and sources give the same set."""
    num_videos: int = 8
    """Number of videos."""
    min_frames: int = 24
    """Fewest frames per video."""
    max_frames: int = 48
    """Most frames per video."""
    size: int = 256
    """Frame side in pixels (square frames, as TAP-Vid evaluates)."""
    min_points: int = 64
    """Fewest tracked points per video."""
    max_points: int = 256
    """Most tracked points per video."""
    max_occluders: int = 3
    """Most moving occluders per video (at least one)."""
    motion: float = 1.0
    """Scale of the camera motion (rotation, zoom, translation, perspective); 0 = still camera."""
    view_fraction: float = 0.55
    """Share of the canvas's shorter side that the frame sees at zoom 1 (room left for motion)."""
    sources: list[str] = field(default_factory=list)
    """Images, image folders or videos to draw canvases and occluders from; empty = the shared
    real data (videos, fox photos, Strecha photos)."""


@dataclass
class BenchmarkVideo:
    """One generated video and its exact ground truth."""

    name: str
    video: np.ndarray
    """(T, S, S, 3) uint8 RGB."""
    points: np.ndarray
    """(N, T, 2) float64 ``(x, y)`` pixels."""
    occluded: np.ndarray
    """(N, T) bool."""
    homographies: np.ndarray
    """(T, 3, 3) canvas → frame."""
    canvas_points: np.ndarray
    """(N, 2) the tracked points on the canvas."""
    occluder_masks: np.ndarray
    """(T, S, S) bool: pixels covered by an occluder."""
    canvas: np.ndarray
    """The canvas image (RGB uint8) the frames look at."""
    gains: np.ndarray
    """(T,) global brightness gain per frame (GT is unaffected)."""
    info: dict = field(default_factory=dict)
    """Sources and drawn parameters (JSON-ready)."""

    def tapvid_entry(self) -> dict:
        """The TAP-Vid pickle entry (points normalised by size − 1)."""
        S = self.video.shape[1]
        return {
            "video": self.video,
            "points": (self.points / (S - 1)).astype(np.float32),
            "occluded": self.occluded.copy(),
        }


def default_sources() -> list[Path]:
    """Every real image source under ``../shared/data`` (or ``$COTRACKER3_SHARED/data``)."""
    shared = os.environ.get("COTRACKER3_SHARED")
    data = (Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared") / "data"
    found = sorted((data / "videos").glob("*.mp4"))
    found += sorted((data / "fox" / "images").glob("*.jpg"))
    found += sorted((data / "poses" / "strecha").glob("*/images/*.jpg"))
    return found


def _expand_sources(sources: list[str] | list[Path]) -> list[Path]:
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in _IMAGE_EXT | _VIDEO_EXT)
        elif p.is_file() and p.suffix.lower() in _IMAGE_EXT | _VIDEO_EXT:
            out.append(p)
        else:
            raise UserError(f"Benchmark source {p} is not an image, a video or a folder of them; "
                            "pass existing .jpg/.png/.mp4 files or folders with --sources.")
    return out


def load_source(path: Path, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """An RGB image from ``path`` (a random frame among the first 40 for a video)."""
    if path.suffix.lower() in _VIDEO_EXT:
        import av

        want = int(rng.integers(0, 40))
        frame = None
        with av.open(str(path)) as container:
            for i, f in enumerate(container.decode(video=0)):
                frame = f
                if i >= want:
                    break
        if frame is None:
            raise UserError(f"The video {path} has no frames; remove it from --sources.")
        return frame.to_ndarray(format="rgb24"), f"{path}#frame{i}"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"Cannot read the image {path}; remove it from --sources or replace it.")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), str(path)


def _smooth_curve(rng: np.random.Generator, T: int, amplitude: float, drift: bool = True) -> np.ndarray:
    """A smooth random function of time, (T,), starting at 0, within about ±amplitude."""
    t = np.arange(T) / max(T - 1, 1)
    y = np.zeros(T)
    for _ in range(2):
        freq = rng.uniform(0.3, 1.2)  # cycles per clip: slow, camera-like
        phase = rng.uniform(0, 2 * np.pi)
        y += rng.uniform(0.3, 0.6) * (np.sin(2 * np.pi * freq * t + phase) - np.sin(phase))
    if drift:
        y += rng.uniform(-1, 1) * t
    return amplitude * y / 1.6


def _homographies(params: dict[str, np.ndarray], centre: np.ndarray, base_scale: float, size: int
                  ) -> np.ndarray:
    """H_t = T(frame centre) · P(perspective) · R(θ)·zoom · T(−camera centre)."""
    T = len(params["angle"])
    Hs = np.zeros((T, 3, 3))
    half = (size - 1) / 2
    for t in range(T):
        c = centre + np.array([params["tx"][t], params["ty"][t]])
        z = base_scale * np.exp(params["log_zoom"][t])
        a = params["angle"][t]
        A = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([z, z, 1])
        to_cam = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]])
        persp = np.array([[1, 0, 0], [0, 1, 0], [params["p1"][t], params["p2"][t], 1]])
        to_frame = np.array([[1, 0, half], [0, 1, half], [0, 0, 1]])
        Hs[t] = to_frame @ persp @ A @ to_cam
    return Hs


def apply_homography(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2) points by a 3×3 homography."""
    p = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ H.T
    return p[:, :2] / p[:, 2:3]


def _views_inside(Hs: np.ndarray, canvas_hw: tuple[int, int], size: int) -> bool:
    """Every frame's footprint (and its homogeneous scale) stays inside the canvas."""
    ch, cw = canvas_hw
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    for H in Hs:
        Hinv = np.linalg.inv(H)
        w = np.concatenate([corners, np.ones((4, 1))], 1) @ Hinv.T
        if not (np.all(w[:, 2] > 0) or np.all(w[:, 2] < 0)):
            return False
        p = w[:, :2] / w[:, 2:3]
        if p.min() < 0 or p[:, 0].max() > cw - 1 or p[:, 1].max() > ch - 1:
            return False
    return True


def _occluder(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A patch cut from a real image with a binary ellipse or polygon mask."""
    h, w = (int(v) for v in rng.integers(36, 100, size=2))
    scale = 1.0
    if min(image.shape[:2]) < 2 * max(h, w):
        scale = 2 * max(h, w) / min(image.shape[:2])
    if scale != 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    y0 = int(rng.integers(0, image.shape[0] - h + 1))
    x0 = int(rng.integers(0, image.shape[1] - w + 1))
    patch = image[y0 : y0 + h, x0 : x0 + w].copy()
    mask = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:
        box = (((w - 1) / 2, (h - 1) / 2), (w - 2.0, h - 2.0), float(rng.uniform(0, 180)))
        cv2.ellipse(mask, box, 1, -1)
    else:
        k = int(rng.integers(5, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(0.6, 1.0, k)
        poly = np.stack([(w - 1) / 2 * (1 + rad * np.cos(ang)), (h - 1) / 2 * (1 + rad * np.sin(ang))], 1)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return patch, mask.astype(bool)


def _occluder_path(rng: np.random.Generator, T: int, size: int, hw: tuple[int, int]) -> np.ndarray:
    """Integer top-left positions (T, 2) (x, y): a straight sweep with a slow wobble."""
    h, w = hw
    start = rng.uniform([-w * 0.5, -h * 0.5], [size - w * 0.5, size - h * 0.5])
    speed = rng.uniform(1.0, 5.0)
    direction = rng.uniform(0, 2 * np.pi)
    # Aim roughly across the frame centre so the occluder crosses tracked content.
    to_centre = np.array([size / 2 - start[0] - w / 2, size / 2 - start[1] - h / 2])
    if np.linalg.norm(to_centre) > 1:
        direction = np.arctan2(to_centre[1], to_centre[0]) + rng.uniform(-0.6, 0.6)
    t = np.arange(T)[:, None]
    path = start + speed * t * np.array([np.cos(direction), np.sin(direction)])
    path += np.stack([_smooth_curve(rng, T, 6.0, drift=False), _smooth_curve(rng, T, 6.0, drift=False)], 1)
    return np.round(path).astype(np.int64)


def _sample_points(rng: np.random.Generator, frame: np.ndarray, n: int, size: int) -> np.ndarray:
    """Half at corners (trackable texture, like hand-picked TAP-Vid points), half uniform."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    n_corner = n // 2
    corners = None
    if n_corner > 0:  # maxCorners=0 would mean "no limit" to OpenCV
        corners = cv2.goodFeaturesToTrack(gray, maxCorners=n_corner, qualityLevel=0.01, minDistance=5)
    pts = [] if corners is None else [corners.reshape(-1, 2)[:n_corner].astype(np.float64)]
    got = sum(len(p) for p in pts)
    pts.append(rng.uniform(0, size - 1, (n - got, 2)))
    return np.concatenate(pts)


def make_video(
    name: str,
    canvas: np.ndarray,
    occluder_images: list[np.ndarray],
    rng: np.random.Generator,
    cfg: BenchmarkConfig,
    info: dict | None = None,
) -> BenchmarkVideo:
    """One benchmark video looking at ``canvas``, with occluders cut from ``occluder_images``."""
    S = cfg.size
    T = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
    # Resize the canvas so that zoom 1 samples it at about 1 canvas pixel per frame pixel
    # (less aliasing than shrinking inside the warp).
    short = min(canvas.shape[:2])
    target = S / cfg.view_fraction
    canvas = cv2.resize(canvas, None, fx=target / short, fy=target / short,
                        interpolation=cv2.INTER_AREA if target < short else cv2.INTER_LINEAR)
    ch, cw = canvas.shape[:2]
    centre = np.array([(cw - 1) / 2, (ch - 1) / 2]) + rng.uniform(-0.1, 0.1, 2) * np.array([cw, ch])
    m = cfg.motion
    params = {
        "angle": _smooth_curve(rng, T, np.deg2rad(12) * m),
        "log_zoom": _smooth_curve(rng, T, 0.2 * m),
        "tx": _smooth_curve(rng, T, 0.15 * cw * m),
        "ty": _smooth_curve(rng, T, 0.15 * ch * m),
        "p1": _smooth_curve(rng, T, 6e-4 * m, drift=False),
        "p2": _smooth_curve(rng, T, 6e-4 * m, drift=False),
    }
    base_scale = 1.0
    # Shrink the motion until every frame sees only canvas (no invented border content).
    for _ in range(30):
        Hs = _homographies(params, centre, base_scale, S)
        if _views_inside(Hs, (ch, cw), S):
            break
        params = {k: v * 0.8 for k, v in params.items()}
        centre = 0.8 * centre + 0.2 * np.array([(cw - 1) / 2, (ch - 1) / 2])
    else:
        base_scale = 1.2
        params = {k: v * 0 for k, v in params.items()}
        Hs = _homographies(params, np.array([(cw - 1) / 2, (ch - 1) / 2]), base_scale, S)

    gains = 1.0 + _smooth_curve(rng, T, 0.08, drift=False)
    clean = np.stack([
        cv2.warpPerspective(canvas, H, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        for H in Hs
    ])
    video = np.clip(clean.astype(np.float32) * gains[:, None, None, None], 0, 255).round().astype(np.uint8)

    # Occluders, pasted with exact binary masks at integer offsets.
    masks = np.zeros((T, S, S), bool)
    n_occ = int(rng.integers(1, cfg.max_occluders + 1)) if occluder_images else 0
    occ_info = []
    for _ in range(n_occ):
        src_idx = int(rng.integers(0, len(occluder_images)))
        patch, pmask = _occluder(rng, occluder_images[src_idx])
        h, w = pmask.shape
        path = _occluder_path(rng, T, S, (h, w))
        occ_info.append({"source_index": src_idx, "size_hw": [h, w]})
        for t in range(T):
            x0, y0 = path[t]
            fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, S), min(y0 + h, S)
            if fx0 >= fx1 or fy0 >= fy1:
                continue
            sub = pmask[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
            region = video[t, fy0:fy1, fx0:fx1]
            region[sub] = patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0][sub]
            masks[t, fy0:fy1, fx0:fx1] |= sub

    # Points: sampled in a random frame (half of them in frame 0), mapped to the canvas.
    n = int(rng.integers(cfg.min_points, cfg.max_points + 1))
    t_src = np.where(rng.random(n) < 0.5, 0, rng.integers(0, T, n))
    canvas_pts = np.zeros((n, 2))
    for t in np.unique(t_src):
        sel = np.flatnonzero(t_src == t)
        frame_pts = _sample_points(rng, clean[t], len(sel), S)
        canvas_pts[sel] = apply_homography(np.linalg.inv(Hs[t]), frame_pts)
    points = np.stack([apply_homography(H, canvas_pts) for H in Hs], axis=1)  # (N, T, 2)
    occluded = occlusion_from_masks(points, masks)
    keep = (~occluded).any(axis=1)  # never-visible tracks cannot be queried
    return BenchmarkVideo(
        name=name, video=video, points=points[keep], occluded=occluded[keep], homographies=Hs,
        canvas_points=canvas_pts[keep], occluder_masks=masks, canvas=canvas, gains=gains,
        info={**(info or {}), "num_frames": T, "occluders": occ_info,
              "num_points": int(keep.sum())},
    )


def occlusion_from_masks(points: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N, T) occlusion: outside the frame, or an occluder covers the point's nearest pixel."""
    T, H, W = masks.shape
    x, y = points[..., 0], points[..., 1]
    outside = (x < 0) | (x > W - 1) | (y < 0) | (y > H - 1)
    xi = np.clip(np.round(x).astype(np.int64), 0, W - 1)
    yi = np.clip(np.round(y).astype(np.int64), 0, H - 1)
    covered = masks[np.arange(T)[None, :], yi, xi]
    return outside | covered


def make_benchmark(cfg: BenchmarkConfig, progress: Callable[[str], None] | None = None
                   ) -> dict[str, BenchmarkVideo]:
    """Generate the whole benchmark (deterministic in ``cfg``)."""
    if cfg.min_frames < 2 or cfg.max_frames < cfg.min_frames:
        raise UserError("Frame counts must satisfy 2 <= --min-frames <= --max-frames.")
    if cfg.min_points < 1 or cfg.max_points < cfg.min_points:
        raise UserError("Point counts must satisfy 1 <= --min-points <= --max-points.")
    if cfg.size < 32:
        raise UserError(f"--size {cfg.size} is too small; use at least 32 (TAP-Vid uses 256).")
    sources = _expand_sources(cfg.sources) if cfg.sources else default_sources()
    if len(sources) < 2:
        where = "in --sources" if cfg.sources else "in the shared data (set COTRACKER3_SHARED)"
        raise UserError(f"make-benchmark found {len(sources)} source image(s) or video(s) {where}; it needs "
                        "at least two (one to look at, another to cut occluders from). Pass images, "
                        "videos or folders with --sources.")
    rng = np.random.default_rng(cfg.seed)
    # Draw a folder first, then a file in it, so a folder of 50 photos does not crowd out
    # a folder of 6 videos.
    groups: dict[Path, list[int]] = {}
    for j, p in enumerate(sources):
        groups.setdefault(p.parent, []).append(j)
    group_list = list(groups.values())
    videos: dict[str, BenchmarkVideo] = {}
    for i in range(cfg.num_videos):
        group = group_list[int(rng.integers(0, len(group_list)))]
        canvas_idx = group[int(rng.integers(0, len(group)))]
        canvas, canvas_src = load_source(sources[canvas_idx], rng)
        others = [j for j in range(len(sources)) if j != canvas_idx]
        occ_idx = rng.choice(others, size=min(3, len(others)), replace=False)
        occ = [load_source(sources[int(j)], rng) for j in occ_idx]
        name = f"{i:03d}_{sources[canvas_idx].stem}"
        v = make_video(name, canvas, [o[0] for o in occ], rng, cfg,
                       info={"canvas": canvas_src, "occluder_sources": [o[1] for o in occ]})
        videos[name] = v
        if progress is not None:
            progress(f"{name}: {v.video.shape[0]} frames, {len(v.points)} points, "
                     f"{100 * v.occluded.mean():.0f}% occluded")
    return videos


def write_benchmark(videos: dict[str, BenchmarkVideo], out_dir: str | Path, cfg: BenchmarkConfig,
                    overwrite: bool = False) -> Path:
    """Write ``benchmark.pkl``, ``benchmark.npz`` and ``meta.json`` into ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        with open(tmp / "benchmark.pkl", "wb") as f:
            pickle.dump({k: v.tapvid_entry() for k, v in videos.items()}, f, protocol=4)
        arrays = {}
        for k, v in videos.items():
            e = v.tapvid_entry()
            arrays.update({f"{k}/video": e["video"], f"{k}/points": e["points"],
                           f"{k}/occluded": e["occluded"], f"{k}/points_px": v.points,
                           f"{k}/homographies": v.homographies, f"{k}/canvas_points": v.canvas_points})
        np.savez_compressed(tmp / "benchmark.npz", **arrays)
        meta = {"config": asdict(cfg), "format": "TAP-Vid DAVIS layout; points normalised by size-1",
                "videos": {k: v.info for k, v in videos.items()}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return out_dir

"""Reader for the official pre-generated Kubric MOVi-F training set (ARCHITECTURE.md §4.1).

Layout: ``<root>/<seq>/frames/*`` (RGB images, sorted by name) and ``<root>/<seq>/<seq>.npy``,
a pickled dict with ``coords`` (N, T, 2) pixel (x, y) and ``visibility`` (N, T), which despite its
name is an **occlusion** flag (True = occluded; the reader negates it). ``root`` may also be the
dataset root above ``kubric/kubric_movi_f_120_frames_dense/movi_f``.

Security: the ``.npy`` annotation files are pickles (the official format), and unpickling can run
arbitrary code. Only read Kubric data you generated or downloaded from a source you trust.

Per sample, as the official CoTracker3 loader: random clip length and frame stride (offline run),
photometric augmentation (eraser rectangles that occlude the points under them, colour jitter,
Gaussian blur), spatial augmentation (padding, smoothly varying anisotropic scale, drifting crop,
horizontal/vertical flips with x -> W - x), points outside the crop set invisible, tracks that fly
more than 1000 px from the crop centre dropped, and ``traj_per_sample`` tracks drawn from those
visible at the first, middle (and, offline, last) frame, duplicates included. Samples with too few
candidates are unusable (None). Randomness comes from the generator the batch stream passes in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.train.data import TrackingSample

log = logging.getLogger(__name__)

NESTED = Path("kubric") / "kubric_movi_f_120_frames_dense" / "movi_f"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class KubricConfig:
    """Sampling and augmentation of Kubric clips (defaults: the official offline run)."""

    crop_size: tuple[int, int] = (384, 512)
    """(H, W) of the training crop (the model resolution)."""
    seq_len: int = 60
    """Clip length (the maximum when random_seq_len)."""
    random_seq_len: bool = True
    """Draw the clip length uniformly from [seq_len // 2, seq_len) (official offline run)."""
    random_frame_rate: bool = True
    """Draw a frame stride r ~ U{1..len // L} (official offline run)."""
    traj_per_sample: int = 512
    """Tracks per clip (official: 512 offline, 384 online)."""
    include_last_frame: bool = True
    """Also draw tracks visible in the last frame (official offline run, random query sampling)."""
    use_augs: bool = True
    """Photometric and spatial augmentation; without it only a random crop."""
    eraser_prob: float = 0.5
    """Per frame (after the first): probability of 1-10 mean-colour rectangles that occlude points."""
    color_prob: float = 0.25
    """Per clip: probability of colour jitter (new parameters every frame)."""
    blur_prob: float = 0.25
    """Per clip: probability of Gaussian blur (kernel 11, sigma 0.1-2, per frame)."""
    pad_max: int = 25
    """Each side is zero-padded by an integer in [0, pad_max)."""
    scale_range: tuple[float, float] = (0.75, 1.25)
    """Range of the base scale."""
    scale_jitter: float = 0.05
    """Per-frame scale random-walk increment bound."""
    max_crop_offset: int = 15
    """Per-frame crop drift increment bound (pixels)."""
    flip: bool = True
    """Random horizontal and vertical flips (p = 0.5 each)."""
    max_distance: float = 1000.0
    """Tracks with a position farther than this from the crop centre are dropped."""
    split: str = "train"
    """"train" (every sequence) or "valid" (the first 30)."""
    copies: int = 4
    """The dataset is this many concatenated copies of the sequence list (one 'epoch')."""


def resolve_root(root: Path) -> Path:
    """The folder holding the sequence folders (accepts the official dataset root too)."""
    root = Path(root)
    if (root / NESTED).is_dir():
        return root / NESTED
    if not root.is_dir():
        raise UserError(f"Kubric folder {root} does not exist; pass the folder holding the sequence "
                        f"folders (<seq>/frames, <seq>/<seq>.npy) or the dataset root above {NESTED}.")
    return root


def read_sequence(seq_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (T,H,W,3) uint8, coords (N,T,2) float and *occlusion* flags (N,T) bool of one sequence.

    Unpickles ``<seq>.npy``: only use trusted data.
    """
    frame_paths = sorted(p for p in (seq_dir / "frames").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    frames = []
    for p in frame_paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"cannot read the Kubric frame {p}; re-download or remove sequence {seq_dir.name}.")
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    ann = np.load(seq_dir / f"{seq_dir.name}.npy", allow_pickle=True).item()
    return np.stack(frames), np.asarray(ann["coords"], np.float32), np.asarray(ann["visibility"], bool)


# -- photometric augmentation ---------------------------------------------------------------


def _gray(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def color_jitter(img: np.ndarray, rng: np.random.Generator, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.25 / 3.14) -> np.ndarray:
    """Brightness, contrast, saturation and hue changes in random order (uint8 in and out)."""
    x = img.astype(np.float32)
    b = rng.uniform(1 - brightness, 1 + brightness)
    c = rng.uniform(1 - contrast, 1 + contrast)
    s = rng.uniform(1 - saturation, 1 + saturation)
    h = rng.uniform(-hue, hue)
    for op in rng.permutation(4):
        if op == 0:
            x = np.clip(x * b, 0, 255)
        elif op == 1:
            x = np.clip((x - _gray(x).mean()) * c + _gray(x).mean(), 0, 255)
        elif op == 2:
            g = _gray(x)[..., None]
            x = np.clip((x - g) * s + g, 0, 255)
        else:
            hsv = cv2.cvtColor(x.astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(h * 256))) % 256).astype(np.uint8)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
    return x.round().astype(np.uint8)


def eraser(frames: list[np.ndarray], trajs: np.ndarray, visible: np.ndarray, rng: np.random.Generator,
           prob: float, max_boxes: int = 10, size: tuple[int, int] = (2, 100)) -> None:
    """In place: mean-colour rectangles on frames after the first; points under them become occluded."""
    H, W = frames[0].shape[:2]
    for i in range(1, len(frames)):
        if rng.random() >= prob:
            continue
        img = frames[i].astype(np.float32)
        for _ in range(int(rng.integers(1, max_boxes + 1))):
            xc, yc = rng.integers(0, W), rng.integers(0, H)
            dx, dy = rng.integers(size[0], size[1]), rng.integers(size[0], size[1])
            x0, x1 = (np.clip([xc - dx / 2, xc + dx / 2], 0, W - 1).round().astype(int))
            y0, y1 = (np.clip([yc - dy / 2, yc + dy / 2], 0, H - 1).round().astype(int))
            patch = img[y0:y1, x0:x1]
            if patch.size:
                img[y0:y1, x0:x1] = patch.reshape(-1, 3).mean(0)
            x, y = trajs[i, :, 0], trajs[i, :, 1]
            visible[i, (x >= x0) & (x < x1) & (y >= y0) & (y < y1)] = False
        frames[i] = img.astype(np.uint8)


# -- the dataset ---------------------------------------------------------------------------------


class KubricMovifDataset:
    """A :class:`~cotracker3_plugin.train.data.SampleSource` over Kubric MOVi-F sequences."""

    def __init__(self, root: Path, cfg: KubricConfig | None = None) -> None:
        self.cfg = cfg or KubricConfig()
        self.root = resolve_root(Path(root))
        seqs = sorted(p for p in self.root.iterdir() if p.is_dir() and (p / f"{p.name}.npy").is_file())
        if self.cfg.split == "valid":
            seqs = seqs[:30]
        elif self.cfg.split != "train":
            raise UserError(f"unknown Kubric split {self.cfg.split!r}; use 'train' or 'valid'.")
        if not seqs:
            raise UserError(f"no Kubric sequences (<seq>/frames and <seq>/<seq>.npy) found in {self.root}; "
                            "check the path.")
        self.sequences = seqs
        log.info("Kubric: %d sequences in %s (only read trusted data: the .npy files are pickles)",
                 len(seqs), self.root)

    def __len__(self) -> int:
        return len(self.sequences) * self.cfg.copies

    def sample(self, index: int, rng: np.random.Generator) -> TrackingSample | None:
        c = self.cfg
        seq = self.sequences[index % len(self.sequences)]
        frames, coords, occluded = read_sequence(seq)
        total = len(frames)
        L = int(rng.integers(c.seq_len // 2, c.seq_len)) if c.random_seq_len else c.seq_len
        r = int(rng.integers(1, max(1, total // L) + 1)) if c.random_frame_rate else 1
        if (L - 1) * r + 1 > total:
            if L > total:
                raise UserError(f"Kubric sequence {seq.name} has {total} frames, fewer than the clip "
                                f"length {L}; lower --seq-len.")
            r = 1
        span = total - L * r
        start = int(rng.integers(0, span)) if span > 0 else 0
        idx = np.arange(start, start + L * r, r)
        idx = idx[idx < total][:L]
        rgbs = [frames[i] for i in idx]
        trajs = np.ascontiguousarray(coords[:, idx].transpose(1, 0, 2)).astype(np.float32)  # (L, N, 2)
        visible = ~occluded[:, idx].T.copy()
        if c.use_augs:
            if c.eraser_prob > 0:
                eraser(rgbs, trajs, visible, rng, c.eraser_prob)
            if rng.random() < c.color_prob:
                rgbs = [color_jitter(f, rng) for f in rgbs]
            if rng.random() < c.blur_prob:
                rgbs = [cv2.GaussianBlur(f, (11, 11), float(rng.uniform(0.1, 2.0))) for f in rgbs]
            rgbs, trajs = self._spatial(rgbs, trajs, visible, rng)
        else:
            rgbs, trajs = self._random_crop(rgbs, trajs, rng)
        Hc, Wc = c.crop_size
        x, y = trajs[..., 0], trajs[..., 1]
        visible &= (x >= 0) & (x <= Wc - 1) & (y >= 0) & (y <= Hc - 1)
        far = (np.hypot(x - Wc / 2, y - Hc / 2) > c.max_distance).any(0)
        keep = ~far
        trajs, visible = trajs[:, keep], visible[:, keep]
        lists = [np.flatnonzero(visible[0]), np.flatnonzero(visible[L // 2])]
        if c.include_last_frame:
            lists.append(np.flatnonzero(visible[L - 1]))
        cand = np.concatenate(lists)  # duplicates on purpose, as the official loader
        if len(cand) < c.traj_per_sample:
            log.debug("Kubric %s: %d candidate tracks < %d; sample skipped", seq.name, len(cand), c.traj_per_sample)
            return None
        pick = cand[rng.permutation(len(cand))[: c.traj_per_sample]]
        video = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).float()
        return TrackingSample(
            video=video,
            trajectory=torch.from_numpy(trajs[:, pick]).float(),
            visibility=torch.from_numpy(visible[:, pick]),
            valid=torch.ones(L, c.traj_per_sample),
            name=seq.name,
        )

    def _random_crop(self, rgbs: list[np.ndarray], trajs: np.ndarray, rng: np.random.Generator
                     ) -> tuple[list[np.ndarray], np.ndarray]:
        Hc, Wc = self.cfg.crop_size
        H, W = rgbs[0].shape[:2]
        y0 = int(rng.integers(0, H - Hc)) if H > Hc else 0
        x0 = int(rng.integers(0, W - Wc)) if W > Wc else 0
        trajs = trajs - np.array([x0, y0], np.float32)
        return [f[y0 : y0 + Hc, x0 : x0 + Wc] for f in rgbs], trajs

    def _spatial(self, rgbs: list[np.ndarray], trajs: np.ndarray, visible: np.ndarray,
                 rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        c = self.cfg
        Hc, Wc = c.crop_size
        trajs = trajs.copy()
        px0, px1, py0, py1 = (int(v) for v in rng.integers(0, c.pad_max, 4))
        rgbs = [np.pad(f, ((py0, py1), (px0, px1), (0, 0))) for f in rgbs]
        trajs[..., 0] += px0
        trajs[..., 1] += py0
        H, W = rgbs[0].shape[:2]
        sx = sy = float(rng.uniform(*c.scale_range))
        dx = dy = 0.0
        scaled = []
        for s, f in enumerate(rgbs):
            if s == 1:
                dx, dy = rng.uniform(-c.scale_jitter, c.scale_jitter, 2)
            elif s > 1:
                dx = dx * 0.8 + rng.uniform(-c.scale_jitter, c.scale_jitter) * 0.2
                dy = dy * 0.8 + rng.uniform(-c.scale_jitter, c.scale_jitter) * 0.2
            sx, sy = sx + dx, sy + dy
            mean = (sx + sy) / 2  # pull the two scales halfway together
            sx, sy = np.clip(sx * 0.5 + mean * 0.5, 0.2, 2.0), np.clip(sy * 0.5 + mean * 0.5, 0.2, 2.0)
            Hn, Wn = max(int(H * sy), Hc + 10), max(int(W * sx), Wc + 10)
            sx, sy = Wn / W, Hn / H
            scaled.append(cv2.resize(f, (Wn, Hn), interpolation=cv2.INTER_LINEAR))
            trajs[s, :, 0] *= sx
            trajs[s, :, 1] *= sy
        # the crop starts centred on the points visible in frame 0 and drifts
        if visible[0].any():
            mx, my = trajs[0, visible[0], 0].mean(), trajs[0, visible[0], 1].mean()
        else:
            mx, my = float(Wc), float(Hc)
        x0, y0 = int(mx - Wc // 2), int(my - Hc // 2)
        ox = oy = 0
        out = []
        m = c.max_crop_offset
        for s, f in enumerate(scaled):
            if s == 1:
                ox, oy = int(rng.integers(-m, m)), int(rng.integers(-m, m))
            elif s > 1:
                ox = int(ox * 0.8 + int(rng.integers(-m, m + 1)) * 0.2)
                oy = int(oy * 0.8 + int(rng.integers(-m, m + 1)) * 0.2)
            x0, y0 = x0 + ox, y0 + oy
            Hn, Wn = f.shape[:2]
            y0 = 0 if Hn == Hc else min(max(0, y0), Hn - Hc - 1)
            x0 = 0 if Wn == Wc else min(max(0, x0), Wn - Wc - 1)
            out.append(f[y0 : y0 + Hc, x0 : x0 + Wc])
            trajs[s, :, 0] -= x0
            trajs[s, :, 1] -= y0
        if c.flip:
            # official convention: x -> W - x (not W - 1 - x), pitfall 19
            if rng.random() < 0.5:
                out = [f[:, ::-1] for f in out]
                trajs[..., 0] = Wc - trajs[..., 0]
            if rng.random() < 0.5:
                out = [f[::-1] for f in out]
                trajs[..., 1] = Hc - trajs[..., 1]
        return [np.ascontiguousarray(f) for f in out], trajs


def write_fake_sequence(root: Path, name: str, frames: np.ndarray, coords: np.ndarray,
                        occluded: np.ndarray) -> Path:
    """Write one sequence in the official layout (for tests and examples): frames (T,H,W,3) uint8,
    coords (N,T,2), occluded (N,T) bool."""
    d = Path(root) / name
    (d / "frames").mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / "frames" / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    np.save(d / f"{name}.npy", {"coords": coords, "visibility": occluded}, allow_pickle=True)
    return d


__all__ = ["KubricConfig", "KubricMovifDataset", "read_sequence", "resolve_root", "write_fake_sequence",
           "color_jitter", "eraser"]

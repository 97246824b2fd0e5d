"""Compare estimated camera poses with reference poses up to a similarity transform.

Structure from motion recovers cameras only up to scale, rotation and translation of
the world, so trajectories are aligned by the Umeyama least-squares similarity on
camera centres before measuring the absolute trajectory error (ATE) and the rotation
error of every camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PoseErrors", "Similarity", "align_trajectories", "compare_poses", "opengl_to_opencv", "umeyama"]


@dataclass
class Similarity:
    """``x -> scale * R @ x + t``."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(x) @ self.R.T + self.t

    def apply_pose(self, world_from_cam: np.ndarray) -> np.ndarray:
        """Map (..., 4, 4) camera-to-world poses into the target frame (rotation and centre)."""
        out = np.array(world_from_cam, dtype=np.float64, copy=True)
        out[..., :3, :3] = self.R @ out[..., :3, :3]
        out[..., :3, 3] = self.apply(out[..., :3, 3])
        return out


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity taking points ``src`` (M, 3) onto ``dst`` (M, 3) (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or len(src) < 3:
        raise ValueError(f"need two (M>=3, D) arrays of equal shape, got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(src.shape[1])
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[-1, -1] = -1
    R = U @ D @ Vt
    var_s = (a**2).sum() / len(src)
    scale = float(np.trace(np.diag(S) @ D) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - scale * R @ mu_s
    return Similarity(scale, R, t)


def opengl_to_opencv(world_from_cam_gl: np.ndarray) -> np.ndarray:
    """Camera-to-world poses with OpenGL axes (y up, z back) -> OpenCV axes (y down, z forward)."""
    out = np.array(world_from_cam_gl, dtype=np.float64, copy=True)
    out[..., :3, 1:3] *= -1
    return out


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of rotation matrices (..., 3, 3) in degrees.

    atan2(|axis term|, cos term) rather than arccos(cos term): arccos loses half the digits near 0,
    which is where pose errors live (1e-8 rad of float noise would read as 1e-6 degrees)."""
    c = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    axis = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    return np.degrees(np.arctan2(np.linalg.norm(axis, axis=-1) / 2.0, c))


@dataclass
class PoseErrors:
    """Pose accuracy of a reconstruction against reference poses."""

    num_frames: int
    num_registered: int
    ate: float
    """RMS camera-centre error after Sim(3) alignment, in reference units."""
    ate_relative: float
    """``ate`` divided by the reference scene scale (see :func:`compare_poses`)."""
    rotation_error_mean_deg: float
    rotation_error_median_deg: float
    rotation_error_max_deg: float
    similarity: Similarity | None

    @property
    def registered_share(self) -> float:
        return self.num_registered / max(1, self.num_frames)

    def as_dict(self) -> dict[str, float]:
        return {
            "frames": self.num_frames, "registered": self.num_registered,
            "registered_share": self.registered_share, "ate": self.ate,
            "ate_relative": self.ate_relative,
            "rotation_error_mean_deg": self.rotation_error_mean_deg,
            "rotation_error_median_deg": self.rotation_error_median_deg,
            "rotation_error_max_deg": self.rotation_error_max_deg,
        }


def align_trajectories(est_world_from_cam: np.ndarray, ref_world_from_cam: np.ndarray,
                       use_orientation: bool = True) -> Similarity:
    """Similarity taking estimated poses onto the reference (both (M, 4, 4), M >= 3).

    Centres alone fix the rotation poorly when they lie nearly on a line or an arc (a
    video's trajectory). With ``use_orientation`` the alignment also fits three points
    per camera along its axes (as far as the trajectory is long), after a
    first centres-only fit gave the scale.
    """
    est_c, ref_c = est_world_from_cam[:, :3, 3], ref_world_from_cam[:, :3, 3]
    sim = umeyama(est_c, ref_c)
    if not use_orientation:
        return sim
    d = np.linalg.norm(ref_c[:, None] - ref_c[None], axis=-1).max()
    length = d if d > 0 else 1.0
    src, dst = [est_c], [ref_c]
    for k in range(3):
        src.append(est_c + est_world_from_cam[:, :3, k] * (length / max(sim.scale, 1e-12)))
        dst.append(ref_c + ref_world_from_cam[:, :3, k] * length)
    return umeyama(np.concatenate(src), np.concatenate(dst))


def compare_poses(est_world_from_cam: np.ndarray, ref_world_from_cam: np.ndarray,
                  registered: np.ndarray | None = None, scene_scale: float | None = None,
                  use_orientation: bool = True) -> PoseErrors:
    """ATE and rotation errors of the registered estimated poses (T, 4, 4) vs the reference.

    Both in OpenCV camera axes, camera-to-world, aligned by :func:`align_trajectories`.
    ``scene_scale`` (reference units) defaults to the largest distance between two
    reference camera centres (the extent of the trajectory); ``ate_relative = ate /
    scene_scale``. With fewer than 3 registered frames, errors are NaN.
    """
    est = np.asarray(est_world_from_cam, dtype=np.float64)
    ref = np.asarray(ref_world_from_cam, dtype=np.float64)
    reg = np.all(np.isfinite(est.reshape(len(est), -1)), axis=1)
    if registered is not None:
        reg &= np.asarray(registered, dtype=bool)
    ref_c = ref[:, :3, 3]
    if scene_scale is None:
        d = np.linalg.norm(ref_c[:, None] - ref_c[None], axis=-1)
        scene_scale = float(d.max()) if d.size else 1.0
    n = int(reg.sum())
    if n < 3:
        nan = float("nan")
        return PoseErrors(len(est), n, nan, nan, nan, nan, nan, None)
    sim = align_trajectories(est[reg], ref[reg], use_orientation)
    aligned = sim.apply_pose(est[reg])
    ate = float(np.sqrt(np.mean(np.sum((aligned[:, :3, 3] - ref_c[reg]) ** 2, axis=1))))
    rel = np.swapaxes(aligned[:, :3, :3], -1, -2) @ ref[reg, :3, :3]
    rot = rotation_angle_deg(rel)
    return PoseErrors(len(est), n, ate, ate / max(scene_scale, 1e-12), float(rot.mean()),
                      float(np.median(rot)), float(rot.max()), sim)

"""The viser viewer: video frames with 2D tracks, 3D points, cameras and trails.

:func:`show` starts a viser server for a :class:`~cotracker3_plugin.io.Clip`, its
:class:`~cotracker3_plugin.tracks.Tracks` and, optionally, the reconstructed
:class:`~cotracker3_plugin.reconstruct.scene.Scene`. Coordinates follow the core
package: pixels with x right and y down; OpenCV camera axes; camera-to-world poses.

What is drawn
-------------
* the current frame with its tracks (visible: filled discs, occluded: hollow rings,
  fading 2D trails) as an image in the GUI panel (viser >= 1.0) and on the highlighted
  camera frustum (or on an image plane when there is no Scene);
* the Scene's coloured point cloud and one frustum per registered frame with a
  thumbnail of that frame;
* an optional dense point cloud (``dense_points``, e.g. ``dense_pc.ply`` of
  :mod:`cotracker3_plugin.reconstruct.densify`), randomly thinned to
  ``ViewerConfig.max_dense_points`` so that the browser stays fluid;
* 3D trails as one batched line-segments node: for each track with a triangulated
  point, its 2D positions over the last frames are back-projected at the depth the
  point has in each frame's camera. A static, well tracked point collapses to a dot;
  moving objects and drifting tracks draw a trail;
* tracks flagged moving (``Tracks.dynamic``) as usual, in magenta, or not at all
  (:mod:`~cotracker3_viser.moving`), and optionally the Scene's moving pixels tinted.

Serving (:func:`~cotracker3_viser.server.show`) and recording (:mod:`~cotracker3_viser.export`)
build on this module; it imports neither.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import viser

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.tracks import VISIBILITY_THRESHOLD, Tracks
from cotracker3_viser import _compat
from cotracker3_viser.drawing import OverlayDrawer
from cotracker3_viser.geometry import (
    lift_to_depth,
    pick_nearest_to_ray,
    ray_plane_hit,
    scene_extent,
    vertical_fov,
    wxyz_from_matrix,
)
from cotracker3_viser.moving import (
    MOVING_COLOR,
    MOVING_MODES,
    MovingMode,
    check_mode,
    moving_flags,
    scene_moving_mask,
    style_tracks,
    tint,
)

log = logging.getLogger(__name__)

_CURRENT_COLOR = (255, 140, 0)
_FRUSTUM_COLOR = (90, 90, 110)
_SELECTED_COLOR = (255, 230, 0)


@dataclass
class ViewerConfig:
    """Display options of the viewer (all adjustable later in the GUI unless noted)."""

    image_width: int = 640
    """Width in pixels of the current-frame image sent to the browser (fixed)."""
    thumbnail_width: int = 96
    """Width in pixels of the frame thumbnails on the camera frustums (fixed)."""
    max_frustums: int = 150
    """At most this many camera frustums, evenly spread over the registered frames (fixed)."""
    trail_length: int = 10
    """Frames of history drawn as trails, in 2D and 3D."""
    max_trails: int = 5000
    """At most this many tracks get a 3D trail (evenly subsampled; fixed)."""
    point_size: float | None = None
    """3D point size in scene units; None: 0.3 % of the scene size."""
    visibility_threshold: float = VISIBILITY_THRESHOLD
    """A point is drawn visible where its confidence exceeds this."""
    min_track_confidence: float = 0.0
    """Hide tracks (and their 3D points) whose mean confidence is below this."""
    jpeg_quality: int = 80
    """JPEG quality of the images sent to the browser (fixed)."""
    fps: float | None = None
    """Playback speed in frames per second; None: the clip's fps."""
    max_dense_points: int = 300_000
    """At most this many points of a dense cloud are sent to the browser (a random subset above; fixed)."""
    moving: MovingMode = "colour"
    """Tracks flagged moving (``Tracks.dynamic``): "show" as others, "colour" magenta, "hide" not drawn."""
    tint_moving_pixels: bool = False
    """Tint the Scene's moving pixels (``Scene.moving_masks``) on the frame."""


def _even_indices(candidates: np.ndarray, k: int) -> np.ndarray:
    if len(candidates) <= k:
        return candidates
    return candidates[np.round(np.linspace(0, len(candidates) - 1, k)).astype(np.int64)]


def _resize_width(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    if w <= width:
        return img
    return cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def thin_dense(points: np.ndarray | None, colors: np.ndarray | None, budget: int, seed: int = 0
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Finite ``points`` (P, 3) as float32 with uint8 ``colors`` (grey if None), at most ``budget`` of them.

    A seeded random subset above the budget: every region keeps its share of points, and the
    same cloud always shows the same subset.
    """
    if points is None:
        return None, None
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    cols = (np.full((len(pts), 3), 180, np.uint8) if colors is None
            else np.asarray(colors, dtype=np.uint8).reshape(-1, 3))
    if len(cols) != len(pts):
        raise UserError(f"dense_colors has {len(cols)} rows for {len(pts)} dense points.")
    keep = np.flatnonzero(np.isfinite(pts).all(axis=1))
    if len(keep) > budget:
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=int(budget), replace=False))
    return pts[keep], cols[keep]


def check_inputs(clip: Clip, tracks: Tracks, scene: Scene | None) -> None:
    """Raise :class:`UserError` if the three inputs do not describe the same video."""
    if clip.num_frames != tracks.num_frames:
        raise UserError(
            f"The video has {clip.num_frames} frames but the tracks have {tracks.num_frames}. "
            "Pass the video the tracks were computed on (same --stride / --max-frames), "
            "or the frames folder of the output.")
    ch, cw = clip.frame_size
    th, tw = tracks.frame_size
    if abs(cw / ch - tw / th) > 0.02 * (tw / th):
        raise UserError(
            f"The video frames are {cw}x{ch} but the tracks were computed on {tw}x{th} frames "
            "(another aspect ratio). Pass the video the tracks were computed on.")
    if scene is not None and len(scene.frame_indices) and int(scene.frame_indices.max()) >= clip.num_frames:
        raise UserError(
            f"The scene refers to frame {int(scene.frame_indices.max())} but the video has "
            f"{clip.num_frames} frames. Pass the scene.npz made from these tracks.")


class TrackViewer:
    """Builds the viser scene and GUI for one clip and keeps them in sync with the frame slider."""

    def __init__(self, server: viser.ViserServer, clip: Clip, tracks: Tracks,
                 scene: Scene | None = None, config: ViewerConfig | None = None, *,
                 dense_points: np.ndarray | None = None, dense_colors: np.ndarray | None = None) -> None:
        check_inputs(clip, tracks, scene)
        self.server, self.clip, self.tracks, self.scene = server, clip, tracks, scene
        self.cfg = config or ViewerConfig()
        self.dense_points, self.dense_colors = thin_dense(dense_points, dense_colors, self.cfg.max_dense_points)
        if self.dense_points is not None and scene is None:
            log.warning("a dense point cloud needs the Scene it was made with (its world); not shown")
            self.dense_points = self.dense_colors = None
        self.num_frames = clip.num_frames
        self.drawer = OverlayDrawer(tracks)
        check_mode(self.cfg.moving)
        self.moving = moving_flags(tracks)  # None: no track is flagged, the mode does nothing
        self.track_score = tracks.confidence.mean(0) if tracks.num_frames else np.zeros(0)
        self.frame = -1
        self.selected = -1
        self.update_times: list[float] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._gui_sync = False  # True while we set GUI values ourselves
        self._visible = tracks.confidence > self.cfg.visibility_threshold
        self.up: tuple[float, ...] | None = None
        self._setup_scene_geometry()
        self._build_gui()
        self._build_static_nodes()
        _compat.on_scene_click(server, self._on_click)
        self._setup_initial_camera()
        self.set_frame(0)
        self._player = threading.Thread(target=self._play_loop, name="cotracker3-viewer-play",
                                        daemon=True)
        self._player.start()

    # ---------------------------------------------------------------- geometry
    def _setup_scene_geometry(self) -> None:
        sc = self.scene
        self.scene_frame = np.full(self.num_frames, -1, dtype=np.int64)
        if sc is None:
            h, w = self.clip.frame_size
            # The frame as a plane in the z=0 plane, 2 units wide, x right, y up.
            self.plane_size = (2.0, 2.0 * h / w)
            self.extent = 2.0
            self.base_point_size = 0.01
            self.point_track = np.zeros(0, dtype=np.int64)
            return
        for s, f in enumerate(np.asarray(sc.frame_indices, dtype=np.int64)):
            if 0 <= f < self.num_frames:
                self.scene_frame[f] = s
        ok = sc.registered & np.isfinite(sc.world_from_cam).all((1, 2))
        self.registered = ok
        centers = sc.world_from_cam[ok, :3, 3]
        self.extent = scene_extent(sc.points, centers)
        self.base_point_size = 0.003 * self.extent
        n = self.tracks.num_points
        self.point_track = np.where((sc.track_ids >= 0) & (sc.track_ids < n), sc.track_ids, -1)
        th, tw = self.tracks.frame_size
        sh, sw = sc.image_size
        self.scene_xy_scale = np.array([(sw - 1) / max(tw - 1, 1), (sh - 1) / max(th - 1, 1)])
        # Tracks with a 3D point get trails; cap their number for bounded update cost.
        with_point = np.flatnonzero(self.point_track >= 0)
        self.trail_points = _even_indices(with_point, self.cfg.max_trails)

    def _pose(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.scene.world_from_cam[s]
        return wxyz_from_matrix(m[:3, :3]), m[:3, 3].copy()

    # -------------------------------------------------------------------- GUI
    def _build_gui(self) -> None:
        gui = self.server.gui
        c = self.cfg
        # The share button would send the scene to viser's public relay: keep the viewer local.
        # (viser 0.2.7's client crashes on this theme message, so only newer versions get it.)
        if _compat.VISER_VERSION >= (1,):
            _compat.call(gui.configure_theme, show_share_button=False)
        self.gui_image = None
        if _compat.HAS_GUI_IMAGE:
            blank = np.zeros((8, 8, 3), np.uint8)
            self.gui_image = _compat.call(gui.add_image, blank, label="Frame", format="jpeg",
                                          jpeg_quality=c.jpeg_quality)
        self.status = gui.add_markdown("")
        with gui.add_folder("Playback"):
            self.frame_slider = gui.add_slider("Frame", min=0, max=max(self.num_frames - 1, 1), step=1,
                                               initial_value=0)
            self.playing = gui.add_checkbox("Playing", initial_value=False)
            self.fps = gui.add_number("FPS", initial_value=float(c.fps or self.clip.fps or 30.0),
                                      min=0.5, max=240.0, step=0.5)
        with gui.add_folder("Display"):
            size0 = float(c.point_size or self.base_point_size)
            self.point_size = gui.add_slider("Point size", min=size0 / 10, max=size0 * 5,
                                             step=size0 / 20, initial_value=size0,
                                             visible=self.scene is not None)
            self.trail_length = gui.add_slider("Trail length", min=0, max=60, step=1,
                                               initial_value=int(c.trail_length))
            self.vis_threshold = gui.add_slider("Visibility threshold", min=0.0, max=1.0, step=0.01,
                                                initial_value=float(c.visibility_threshold))
            self.min_conf = gui.add_slider("Min track confidence", min=0.0, max=1.0, step=0.01,
                                           initial_value=float(c.min_track_confidence))
            # Absent (hidden and inert) when no track is flagged moving.
            self.moving_mode = _compat.call(gui.add_dropdown, "Moving tracks", MOVING_MODES,
                                            initial_value=c.moving, disabled=self.moving is None,
                                            visible=self.moving is not None,
                                            hint="Tracks that follow a moving subject (Tracks.dynamic)")
        with gui.add_folder("Layers"):
            has_scene = self.scene is not None
            self.show_points = gui.add_checkbox("3D points", initial_value=True, visible=has_scene)
            self.show_dense = gui.add_checkbox("Dense points", initial_value=True,
                                               visible=self.dense_points is not None)
            self.show_cameras = gui.add_checkbox("Cameras", initial_value=True, visible=has_scene)
            self.show_current = gui.add_checkbox("Current camera", initial_value=True, visible=has_scene)
            self.show_trails3d = gui.add_checkbox("3D trails", initial_value=True, visible=has_scene)
            self.show_tracks2d = gui.add_checkbox("2D tracks", initial_value=True)
            self.show_image = gui.add_checkbox("Frame image", initial_value=True)
            has_masks = getattr(self.scene, "moving_masks", None) is not None
            self.show_moving_pixels = gui.add_checkbox("Moving pixels", visible=has_masks,
                                                       initial_value=bool(c.tint_moving_pixels))
        with gui.add_folder("Selection"):
            self.track_id = gui.add_number("Track id", initial_value=-1, min=-1,
                                           max=max(self.tracks.num_points - 1, 0), step=1)
            self.selection_info = gui.add_markdown("Click a 3D point (or a track on the frame) to select it.")

        self.frame_slider.on_update(lambda _: self.set_frame(int(self.frame_slider.value)))
        for h in (self.trail_length, self.show_tracks2d, self.show_image, self.show_current,
                  self.show_trails3d, self.show_moving_pixels):
            h.on_update(lambda _: self.refresh())
        self.vis_threshold.on_update(lambda _: self._on_threshold())
        self.min_conf.on_update(lambda _: self._on_point_style())
        self.point_size.on_update(lambda _: self._on_point_style())
        self.moving_mode.on_update(lambda _: self._on_point_style())  # 3D points hide or recolour too
        self.show_points.on_update(lambda _: self._set_visible(self.points_node, self.show_points.value))
        self.show_dense.on_update(lambda _: self._set_visible(self.dense_node, self.show_dense.value))
        self.show_cameras.on_update(lambda _: self._set_visible(self.cameras_root, self.show_cameras.value))
        self.track_id.on_update(lambda _: self._on_track_id())

    # ------------------------------------------------------------ static nodes
    def _build_static_nodes(self) -> None:
        scene_api = self.server.scene
        self.points_node = self.cameras_root = self.current_node = self.dense_node = None
        self.trails_node = self.selected_node = self.plane_node = None
        if self.scene is None:
            self.up = (0.0, 1.0, 0.0)
            scene_api.set_up_direction("+y")
            return
        sc = self.scene
        up = -np.nanmean(sc.world_from_cam[self.registered, :3, 1], axis=0) if self.registered.any() else None
        if up is not None and np.isfinite(up).all() and np.linalg.norm(up) > 1e-6:
            self.up = tuple(float(v) for v in up / np.linalg.norm(up))
            scene_api.set_up_direction(self.up)
        self._add_points()
        self._add_dense()
        self.cameras_root = scene_api.add_frame("/cameras", show_axes=False)
        h, w = self.clip.frame_size
        chosen = _even_indices(np.flatnonzero(self.registered), self.cfg.max_frustums)
        self.frustum_scale = 0.04 * self.extent
        clip_of_scene = np.asarray(sc.frame_indices, dtype=np.int64)
        for s in chosen:
            K = sc.K(s)
            wxyz, pos = self._pose(s)
            f = int(clip_of_scene[s])
            thumb = _resize_width(self.clip.frames[f], self.cfg.thumbnail_width) if 0 <= f < self.num_frames else None
            _compat.call(scene_api.add_camera_frustum, f"/cameras/f{int(s):05d}",
                         fov=vertical_fov(K, sc.image_size[0]), aspect=w / h, scale=self.frustum_scale,
                         color=_FRUSTUM_COLOR, image=thumb, format="jpeg", jpeg_quality=70,
                         wxyz=wxyz, position=pos, thickness=1.0, thickness_units="screen")

    def _points_shown(self) -> np.ndarray:
        tid = self.point_track
        shown = self._tracks_shown()
        if len(shown) == 0:
            return tid < 0
        return np.where(tid >= 0, shown[np.maximum(tid, 0)], True)

    def _add_points(self) -> None:
        sc = self.scene
        keep = self._points_shown()
        pts = sc.points[keep].astype(np.float32)
        cols = sc.colors[keep]
        if self.moving is not None and self.moving_mode.value == "colour":
            tid = self.point_track[keep]
            cols = cols.copy()
            cols[(tid >= 0) & self.moving[np.maximum(tid, 0)]] = MOVING_COLOR
        if len(pts) == 0:  # viser needs at least one point; hide an empty cloud
            pts, cols = np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8)
        self.points_node = _compat.call(
            self.server.scene.add_point_cloud, "/points", points=pts, colors=cols,
            point_size=float(self.point_size.value), point_shape="rounded", precision="float32",
            point_shading="flat", visible=bool(self.show_points.value) and bool(keep.any()))

    def _add_dense(self) -> None:
        if self.dense_points is None or len(self.dense_points) == 0:
            return
        # Half the size of the sparse points: the dense cloud is several times denser.
        self.dense_node = _compat.call(
            self.server.scene.add_point_cloud, "/dense_points", points=self.dense_points,
            colors=self.dense_colors, point_size=0.5 * float(self.point_size.value), point_shape="square",
            precision="float32", point_shading="flat", visible=bool(self.show_dense.value))

    # ------------------------------------------------------------- callbacks
    def _set_visible(self, node, visible: bool) -> None:
        if node is not None:
            node.visible = bool(visible)

    def _on_threshold(self) -> None:
        with self._lock:
            self._visible = self.tracks.confidence > float(self.vis_threshold.value)
        self.refresh()

    def _on_point_style(self) -> None:
        with self._lock:
            if self.scene is not None:
                self._add_points()
                self._add_dense()
        self.refresh()

    def _on_track_id(self) -> None:
        # viser 0.2.7 runs callbacks later on a pool thread, even for our own writes.
        if not self._gui_sync and int(self.track_id.value) != self.selected:
            self.select_track(int(self.track_id.value))

    def _initial_view(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(position, look_at) of the opening view, or None to keep viser's default."""
        if self.scene is None:
            return (0.0, 0.0, 2.6), (0.0, 0.0, 0.0)
        reg = np.flatnonzero(self.registered)
        if len(reg) == 0:
            return None
        pts = self.scene.points[np.isfinite(self.scene.points).all(1)]
        target = np.median(pts, axis=0) if len(pts) else self.scene.world_from_cam[reg, :3, 3].mean(0)
        m = self.scene.world_from_cam[reg[len(reg) // 2]]
        # Beyond and above the middle camera, looking at the middle of the points.
        pos = target + 1.8 * (m[:3, 3] - target) - m[:3, 1] * 0.3 * self.extent
        return tuple(float(v) for v in pos), tuple(float(v) for v in target)

    def _setup_initial_camera(self) -> None:
        view = self._initial_view()
        if view is None:
            return
        initial = getattr(self.server, "initial_camera", None)  # viser >= 1.0
        if initial is not None:
            initial.position, initial.look_at = view
            if self.up is not None:
                initial.up = self.up
        else:
            self.server.on_client_connect(self._on_connect)

    def _on_connect(self, client) -> None:
        view = self._initial_view()
        with contextlib.suppress(AttributeError, AssertionError):
            client.camera.position, client.camera.look_at = view

    def _on_click(self, origin: np.ndarray, direction: np.ndarray, client) -> None:
        track = -1
        if self.scene is not None:
            if not self.show_points.value:
                return
            keep = np.flatnonzero(self._points_shown())
            hit = pick_nearest_to_ray(self.scene.points[keep], origin, direction)
            if hit < 0:
                return
            track = int(self.point_track[keep[hit]])
            if track < 0:
                self.selection_info.content = "That 3D point has no track."
                return
        else:
            p = ray_plane_hit(origin, direction, np.zeros(3), np.array([0.0, 0.0, 1.0]))
            if p is None:
                return
            (pw, ph), (h, w) = self.plane_size, self.clip.frame_size
            px = np.array([(p[0] / pw + 0.5) * (w - 1), (0.5 - p[1] / ph) * (h - 1)])
            t = max(self.frame, 0)
            xy = self.drawer.scaled_xy(t, (h, w))
            d = np.linalg.norm(xy - px, axis=1)
            d[~self._tracks_shown() | ~np.isfinite(d)] = np.inf
            if len(d) == 0 or d.min() > 0.03 * max(h, w):
                return
            track = int(np.argmin(d))
        self.select_track(track)

    # ------------------------------------------------------------ public API
    def select_track(self, track: int) -> None:
        """Highlight one track (its whole 2D trajectory and its 3D point); -1 clears."""
        with self._lock:
            n = self.tracks.num_points
            self.selected = int(track) if 0 <= int(track) < n else -1
            if int(self.track_id.value) != self.selected:
                self._gui_sync = True
                try:
                    self.track_id.value = self.selected
                finally:
                    self._gui_sync = False
            if self.selected < 0:
                self.selection_info.content = "No track selected."
            else:
                q = self.tracks.queries[self.selected]
                self.selection_info.content = (
                    f"**Track {self.selected}**: query frame {int(q[0])} at ({q[1]:.1f}, {q[2]:.1f}) px, "
                    f"mean confidence {self.track_score[self.selected]:.2f}, visible in "
                    f"{int(self.tracks.visible[:, self.selected].sum())}/{self.num_frames} frames.")
            self._update_selected_3d()
        self.refresh()

    def set_frame(self, t: int) -> None:
        """Show frame ``t`` (also moves the slider of every connected browser)."""
        t = int(np.clip(t, 0, self.num_frames - 1))
        with self._lock:
            if int(self.frame_slider.value) != t:
                self.frame_slider.value = t  # viser 1.x calls our slider callback right here
            if t != self.frame:
                self._render(t)

    def render(self, t: int) -> None:
        """Draw frame ``t`` now, even if it is the one shown (recordings capture every frame)."""
        with self._lock:
            self._render(int(np.clip(t, 0, self.num_frames - 1)))

    def refresh(self) -> None:
        """Redraw the current frame after a display setting changed."""
        with self._lock:
            if self.frame >= 0:
                self._render(self.frame)

    def stop(self) -> None:
        self._stop.set()

    # ---------------------------------------------------------------- render
    def track_style(self) -> tuple[np.ndarray, np.ndarray]:
        """(shown (N,) bool, colors (N, 3) uint8) of the tracks under the current filter and moving mode."""
        shown = self.track_score >= float(self.min_conf.value)
        return style_tracks(str(self.moving_mode.value), self.moving, shown, self.drawer.colors)

    def _tracks_shown(self) -> np.ndarray:
        return self.track_style()[0]

    def frame_overlay(self, t: int) -> np.ndarray:
        """The frame ``t`` at display size with its tracks drawn (what the GUI shows)."""
        img = _resize_width(self.clip.frames[t], self.cfg.image_width)
        if self.show_moving_pixels.value and self.scene is not None:
            mask = scene_moving_mask(self.scene, int(self.scene_frame[t]), img.shape[:2])
            if mask is not None:
                img = tint(img, mask)
        if not self.show_tracks2d.value:
            return img
        shown, colors = self.track_style()
        return self.drawer.draw(img, t, visible=self._visible, shown=shown, colors=colors,
                                trail=int(self.trail_length.value), selected=self.selected)

    def _render(self, t: int) -> None:
        start = time.perf_counter()
        self.frame = t
        show_img = bool(self.show_image.value)
        overlay = self.frame_overlay(t) if show_img else None
        with self.server.atomic():
            if self.gui_image is not None:
                self.gui_image.visible = show_img
                if overlay is not None:
                    self.gui_image.image = overlay
            if self.scene is None:
                self._update_plane(overlay)
            else:
                self._update_current_camera(t, overlay)
                self._update_trails(t)
            shown = self._tracks_shown()
            nvis = int((self._visible[t] & shown).sum())
            self.status.content = (f"Frame **{t}** / {self.num_frames - 1} · {nvis} of "
                                   f"{int(shown.sum())} tracks visible"
                                   + ("" if self.moving is None else f" · {int(self.moving.sum())} moving"))
        self.update_times.append(time.perf_counter() - start)

    def _update_plane(self, overlay: np.ndarray | None) -> None:
        visible = overlay is not None
        if overlay is None:
            if self.plane_node is not None:
                self.plane_node.visible = False
            return
        if self.plane_node is not None and _compat.has_prop(self.plane_node, "image"):
            self.plane_node.image = overlay
            self.plane_node.visible = visible
            return
        pw, ph = self.plane_size
        # viser draws image rows along +y; turn the plane over x so the frame is upright (world +y up).
        self.plane_node = _compat.call(self.server.scene.add_image, "/frame", overlay, pw, ph,
                                       format="jpeg", jpeg_quality=self.cfg.jpeg_quality,
                                       wxyz=(0.0, 1.0, 0.0, 0.0))

    def _update_current_camera(self, t: int, overlay: np.ndarray | None) -> None:
        s = int(self.scene_frame[t])
        on = s >= 0 and bool(self.registered[s]) and bool(self.show_current.value)
        if not on:
            if self.current_node is not None:
                self.current_node.visible = False
            return
        wxyz, pos = self._pose(s)
        node = self.current_node
        if node is not None and _compat.has_prop(node, "image"):
            node.wxyz, node.position, node.visible = wxyz, pos, True
            node.image = overlay
            return
        h, w = self.clip.frame_size
        self.current_node = _compat.call(
            self.server.scene.add_camera_frustum, "/current_camera",
            fov=vertical_fov(self.scene.K(s), self.scene.image_size[0]), aspect=w / h,
            scale=self.frustum_scale * 2.5, color=_CURRENT_COLOR, image=overlay, format="jpeg",
            jpeg_quality=self.cfg.jpeg_quality, wxyz=wxyz, position=pos, thickness=3.0,
            thickness_units="screen")

    def lifted_trails(self, t: int, length: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """3D positions (L, M, 3) of scene ``points`` lifted in the posed frames among t-length..t, and validity (L, M).

        Frames without a camera pose (not reconstructed, or not registered) are skipped, so
        consecutive rows are consecutive posed frames and trails bridge the gaps.
        """
        sc = self.scene
        window = np.arange(max(0, t - length), t + 1)
        s_of = self.scene_frame[window]
        frames = window[(s_of >= 0) & self.registered[np.maximum(s_of, 0)]]
        tid = self.point_track[points]
        X = sc.points[points]
        out = np.full((len(frames), len(points), 3), np.nan)
        ok = np.zeros((len(frames), len(points)), bool)
        for i, f in enumerate(frames):
            s = int(self.scene_frame[f])
            xy = self.tracks.xy[f, tid].astype(np.float64) * self.scene_xy_scale
            out[i] = lift_to_depth(xy, X, sc.world_from_cam[s], sc.K(s))
            ok[i] = self._visible[f, tid] & np.isfinite(out[i]).all(1)
        return out, ok

    def _update_trails(self, t: int) -> None:
        length = int(self.trail_length.value)
        pts = self.trail_points
        shown, track_colors = self.track_style()
        if len(pts):
            pts = pts[shown[self.point_track[pts]]]
        if not self.show_trails3d.value or length <= 0 or len(pts) == 0:
            if self.trails_node is not None:
                self.trails_node.visible = False
            return
        lifted, ok = self.lifted_trails(t, length, pts)
        colors = track_colors[self.point_track[pts]].astype(np.float32)
        seg_a, seg_b, seg_c = [], [], []
        steps = lifted.shape[0] - 1
        for k in range(steps):
            good = ok[k] & ok[k + 1]
            fade = 0.3 + 0.7 * (k + 1) / max(steps, 1)
            seg_a.append(lifted[k, good])
            seg_b.append(lifted[k + 1, good])
            seg_c.append(np.repeat((colors[good] * fade)[:, None], 2, axis=1))
        if steps <= 0 or sum(len(a) for a in seg_a) == 0:
            if self.trails_node is not None:
                self.trails_node.visible = False
            return
        segs = np.stack([np.concatenate(seg_a), np.concatenate(seg_b)], axis=1).astype(np.float32)
        cols = np.concatenate(seg_c).astype(np.uint8)
        self.trails_node = self._add_segments("/trails", segs, cols, width=2.0)

    def _add_segments(self, name: str, segs: np.ndarray, cols: np.ndarray, width: float):
        """One batched node of line segments (N, 2, 3); a point cloud of their ends on viser 0.2.7."""
        scene_api = self.server.scene
        if _compat.HAS_LINE_SEGMENTS:
            return _compat.call(scene_api.add_line_segments, name, points=segs, colors=cols,
                                thickness=width, thickness_units="screen", line_width=width)
        return _compat.call(scene_api.add_point_cloud, name, points=segs.reshape(-1, 3),
                            colors=cols.reshape(-1, 3), point_size=float(self.point_size.value) * 0.6)

    def _update_selected_3d(self) -> None:
        if self.scene is None:
            return
        scene_api = self.server.scene
        idx = np.flatnonzero(self.point_track == self.selected) if self.selected >= 0 else []
        if len(idx) == 0:
            for node in (self.selected_node, getattr(self, "selected_trail_node", None)):
                if node is not None:
                    node.visible = False
            return
        p = self.scene.points[idx[:1]].astype(np.float32)
        self.selected_node = _compat.call(scene_api.add_point_cloud, "/selected", points=p,
                                          colors=np.array([_SELECTED_COLOR], np.uint8),
                                          point_size=max(float(self.point_size.value) * 8, 0.015 * self.extent),
                                          point_shape="circle", precision="float32")
        lifted, ok = self.lifted_trails(self.num_frames - 1, self.num_frames - 1, idx[:1])
        good = ok[:-1, 0] & ok[1:, 0]
        if good.any():
            segs = np.stack([lifted[:-1, 0][good], lifted[1:, 0][good]], 1).astype(np.float32)
            cols = np.tile(np.array(_SELECTED_COLOR, np.uint8), (len(segs), 2, 1))
            self.selected_trail_node = self._add_segments("/selected_trail", segs, cols, width=4.0)
        elif getattr(self, "selected_trail_node", None) is not None:
            self.selected_trail_node.visible = False

    # -------------------------------------------------------------- playback
    def _play_loop(self) -> None:
        next_time = time.monotonic()
        while not self._stop.is_set():
            if not self.playing.value:
                time.sleep(0.05)
                next_time = time.monotonic()
                continue
            period = 1.0 / max(float(self.fps.value), 0.5)
            next_time += period
            try:
                self.set_frame((self.frame + 1) % self.num_frames)
            except Exception:  # a closed server must not kill the process with a traceback loop
                log.exception("playback stopped")
                return
            time.sleep(max(0.0, next_time - time.monotonic()))
            if time.monotonic() - next_time > 1.0:  # fell far behind: do not try to catch up
                next_time = time.monotonic()

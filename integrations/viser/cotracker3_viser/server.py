"""Serving the viewer: start a viser server around a :class:`TrackViewer`, and the handle to it.

The layers depend one way: :mod:`~cotracker3_viser.viewer` builds the scene and GUI,
:mod:`~cotracker3_viser.export` records a viewer, and this module (which offers
``handle.export``) uses both; the viewer knows neither.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import viser

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.tracks import Tracks
from cotracker3_viser.viewer import TrackViewer, ViewerConfig, check_inputs

log = logging.getLogger(__name__)

__all__ = ["ViewerHandle", "headless_viewer", "show", "start_server"]


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


@dataclass
class ViewerHandle:
    """A running viewer: its server, the :class:`TrackViewer`, and the URL to open."""

    server: viser.ViserServer
    viewer: TrackViewer
    url: str
    _stopped: bool = field(default=False, repr=False)

    @property
    def port(self) -> int:
        return int(self.server.get_port())

    def set_frame(self, t: int) -> None:
        self.viewer.set_frame(t)

    def select_track(self, track: int) -> None:
        self.viewer.select_track(track)

    def export(self, path: str | Path, fps: float | None = None) -> Path:
        """Write a ``.viser`` recording or a self-contained ``.html`` that plays without Python."""
        from cotracker3_viser.export import export_recording

        return export_recording(self.viewer, path, fps=fps)

    def wait(self) -> None:
        """Block until Ctrl-C, then stop the server."""
        try:
            while not self._stopped:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.viewer.stop()
            self.server.stop()

    def __enter__(self) -> ViewerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(host: str = "127.0.0.1", port: int = 8080) -> viser.ViserServer:
    """A quiet viser server (it tries the next ports if ``port`` is taken)."""
    try:
        return viser.ViserServer(host=host, port=port, verbose=False)
    except OSError as e:
        raise UserError(f"Cannot start the viewer on {host}:{port} ({e}). Pass another --host "
                        "or --port.") from e


def show(clip: Clip, tracks: Tracks, scene: Scene | None = None, *, host: str = "127.0.0.1",
         port: int = 8080, block: bool = True, config: ViewerConfig | None = None,
         dense_points: np.ndarray | None = None, dense_colors: np.ndarray | None = None) -> ViewerHandle:
    """Open ``clip`` with its ``tracks`` (and ``scene``) in a viser web viewer.

    Returns a :class:`ViewerHandle` at once when ``block`` is False; otherwise serves
    until Ctrl-C. The URL is in ``handle.url`` (the server moves to the next free
    port when ``port`` is taken). Everything is served from the viser wheel: the page
    makes no request outside the server. ``dense_points`` (P, 3) in the scene's world, with
    ``dense_colors`` (P, 3) uint8, add a dense cloud (at most ``config.max_dense_points`` shown).
    """
    check_inputs(clip, tracks, scene)
    server = start_server(host, port)
    try:
        viewer = TrackViewer(server, clip, tracks, scene, config, dense_points=dense_points,
                             dense_colors=dense_colors)
    except BaseException:
        server.stop()
        raise
    handle = ViewerHandle(server, viewer, f"http://{_url_host(host)}:{server.get_port()}")
    log.info("viewer running at %s", handle.url)
    if block:
        handle.wait()
    return handle


@contextlib.contextmanager
def headless_viewer(clip: Clip, tracks: Tracks, scene: Scene | None = None,
                    config: ViewerConfig | None = None, *, dense_points: np.ndarray | None = None,
                    dense_colors: np.ndarray | None = None) -> Iterator[TrackViewer]:
    """A viewer on a free localhost port, stopped on exit (for export, benchmarks and tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    handle = show(clip, tracks, scene, host="127.0.0.1", port=free, block=False, config=config,
                  dense_points=dense_points, dense_colors=dense_colors)
    try:
        yield handle.viewer
    finally:
        handle.stop()

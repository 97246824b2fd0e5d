"""The viewer in headless Chromium: the page loads, renders, follows the slider both ways,
and makes no request outside the local server; the exported .html plays from disk.

Screenshots go to artifacts/ (gitignored) for a human look.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("viser")
pytest.importorskip("playwright")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

from cotracker3_viser._compat import VISER_VERSION  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)"),
    # viser 0.2.x's client fetches Google Tag Manager and cannot export .html (see integrations/viser/README.md).
    pytest.mark.skipif(VISER_VERSION < (1,), reason="the offline/no-request checks need viser >= 1.0"),
]


def _canvas_pixels(png: bytes, panel: int = 360) -> np.ndarray:
    """The 3D view of a screenshot: below the software-WebGL notice, left of the GUI panel."""
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return img[160:-60, :img.shape[1] - panel]


def _drawn(img: np.ndarray) -> float:
    """Share of pixels that differ from the background colour (top-centre pixel)."""
    return float((np.abs(img.astype(int) - img[2, img.shape[1] // 2].astype(int)).sum(-1) > 30).mean())


def _not_blank(img: np.ndarray) -> None:
    assert img.std() > 10 and _drawn(img) > 0.02, \
        f"3D view looks blank (std {img.std():.1f}, drawn {_drawn(img):.3f})"


def _wait_for(cond, timeout=15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def test_viewer_in_chromium(browser, tmp_path):
    import socket

    from cotracker3_viser.export import export_recording
    from cotracker3_viser.server import show
    from cotracker3_viser.synthetic import make_synthetic
    from cotracker3_viser.viewer import ViewerConfig

    clip, tracks, scene = make_synthetic(num_points=400, num_frames=24, size=(120, 160))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handle = show(clip, tracks, scene, host="127.0.0.1", port=port, block=False,
                  config=ViewerConfig(trail_length=8))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(handle.url)
        page.get_by_text("Playback").first.wait_for(timeout=30000)
        page.get_by_text("Frame 0 / 23", exact=False).first.wait_for(timeout=15000)
        # Software WebGL is slow on a loaded machine: poll until the scene is drawn.
        assert _wait_for(lambda: _drawn(_canvas_pixels(page.screenshot())) > 0.02, timeout=30)
        time.sleep(0.5)
        first = page.screenshot(path=str(ARTIFACTS / "viewer_frame0.png"))
        _not_blank(_canvas_pixels(first))

        # Page -> server: drive the real slider with the keyboard.
        slider = page.get_by_role("slider").first
        slider.focus()
        slider.press("End")
        assert _wait_for(lambda: handle.viewer.frame == 23), f"server frame {handle.viewer.frame}"
        page.get_by_text("Frame 23 / 23", exact=False).first.wait_for(timeout=15000)
        a = _canvas_pixels(first)

        def changed() -> float:
            b = _canvas_pixels(page.screenshot())
            return float((np.abs(a.astype(int) - b.astype(int)).sum(-1) > 30).mean())

        # The highlighted camera moves to the last frame: a large part of the view changes.
        assert _wait_for(lambda: changed() > 0.005, timeout=20), f"the 3D view did not change ({changed():.4f})"
        time.sleep(0.5)
        last = page.screenshot(path=str(ARTIFACTS / "viewer_frame23.png"))
        _not_blank(_canvas_pixels(last))

        # A click on a 3D point selects its track: project the points with the browser's camera.
        import viser.transforms as vtf

        cam = next(iter(handle.server.get_clients().values())).camera
        rot = vtf.SO3(np.asarray(cam.wxyz)).as_matrix()
        local = (scene.points - np.asarray(cam.position)) @ rot  # OpenCV camera axes
        f = 400 / np.tan(cam.fov / 2)  # fov is vertical; the viewport is 800 px high
        uv = local[:, :2] / local[:, 2:] * f + [600, 400]
        cand = np.flatnonzero((local[:, 2] > 0) & (uv[:, 0] > 100) & (uv[:, 0] < 800) & (uv[:, 1] > 200))
        target = int(cand[np.argmin(np.linalg.norm(uv[cand] - [450, 400], axis=1))])
        page.mouse.click(float(uv[target, 0]), float(uv[target, 1]))
        assert _wait_for(lambda: handle.viewer.selected >= 0), "the click selected nothing"
        hit = handle.viewer.selected
        assert hit == target or np.linalg.norm(uv[hit] - uv[target]) < 4, (hit, target)
        page.get_by_text(f"Track {hit}", exact=False).first.wait_for(timeout=15000)

        # Server -> page: the slider and the status text follow set_frame / select_track.
        handle.set_frame(11)
        handle.select_track(5)
        assert _wait_for(lambda: slider.get_attribute("aria-valuenow") == "11")
        page.get_by_text("Track 5", exact=False).first.wait_for(timeout=15000)
        time.sleep(1.0)
        page.screenshot(path=str(ARTIFACTS / "viewer_selected.png"))

        local = (f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", "blob:", "data:")
        outside = [u for u in requests if not u.startswith(local)]
        assert requests and not outside, f"requests outside the local server: {outside[:5]}"

        # The exported page plays from disk with no server and no network.
        html = export_recording(handle.viewer, tmp_path / "view.html", frames=range(0, 24, 4))
        page2 = browser.new_page(viewport={"width": 1000, "height": 700})
        offline: list[str] = []
        page2.on("request", lambda r: offline.append(r.url))
        page2.goto(html.as_uri())
        page2.locator("canvas").first.wait_for(timeout=30000)
        # The client fades the scene in over a few seconds: poll until it is drawn.
        assert _wait_for(lambda: _drawn(_canvas_pixels(page2.screenshot(), panel=0)) > 0.05, timeout=25)
        shot = page2.screenshot(path=str(ARTIFACTS / "viewer_export_html.png"))
        _not_blank(_canvas_pixels(shot, panel=0))
        assert not [u for u in offline if not u.startswith(("file:", "blob:", "data:"))], offline[:5]
    finally:
        handle.stop()

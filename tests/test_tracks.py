import numpy as np
import pytest

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.tracks import TRACKS_FORMAT_VERSION, Tracks


def _tracks(t=5, n=4):
    rng = np.random.default_rng(0)
    return Tracks(
        xy=rng.uniform(0, 50, (t, n, 2)), visible=rng.random((t, n)) > 0.3,
        confidence=rng.random((t, n)), queries=np.c_[np.zeros(n), rng.uniform(0, 50, (n, 2))],
        frame_size=(48, 64), meta={"model": "test"},
    )


def test_npz_round_trip(tmp_path):
    tr = _tracks()
    tr.save(tmp_path / "t.npz")
    back = Tracks.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.xy, tr.xy)
    np.testing.assert_array_equal(back.visible, tr.visible)
    np.testing.assert_array_equal(back.confidence, tr.confidence)
    np.testing.assert_array_equal(back.queries, tr.queries)
    assert back.frame_size == (48, 64) and back.meta == {"model": "test"}
    assert list(tmp_path.iterdir()) == [tmp_path / "t.npz"]  # no temp file left behind


def test_load_rejects_newer_version_and_garbage(tmp_path):
    tr = _tracks()
    tr.save(tmp_path / "t.npz")
    z = dict(np.load(tmp_path / "t.npz"))
    z["format_version"] = np.int64(TRACKS_FORMAT_VERSION + 1)
    np.savez(tmp_path / "new.npz", **z)
    with pytest.raises(UserError, match="newer"):
        Tracks.load(tmp_path / "new.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a tracks file"):
        Tracks.load(tmp_path / "junk.npz")


def test_csv_and_subset(tmp_path):
    tr = _tracks(t=3, n=2)
    lines = tr.to_csv(tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == "frame,point,x,y,visible,confidence" and len(lines) == 1 + 3 * 2
    frame, point, x, *_ = lines[1 + 2 * 2 + 1].split(",")
    assert (frame, point) == ("2", "1") and float(x) == pytest.approx(tr.xy[2, 1, 0], abs=1e-3)
    sub = tr.subset(points=[1], frames=slice(1, 3))
    assert sub.xy.shape == (2, 1, 2) and sub.queries[0, 0] == tr.queries[1, 0] - 1
    np.testing.assert_array_equal(sub.xy[0, 0], tr.xy[1, 1])


def test_threshold_rule():
    tr = _tracks()
    assert (tr.with_threshold(0.5).visible == (tr.confidence > 0.5)).all()
    with pytest.raises(ValueError):
        Tracks(xy=np.zeros((2, 3, 2)), visible=np.zeros((2, 4), bool), confidence=np.zeros((2, 3)),
               queries=np.zeros((3, 3)), frame_size=(4, 4))

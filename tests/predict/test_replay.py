"""Predictor logic vs the official predictors, replaying the recorded model outputs (fast)."""

from __future__ import annotations

import numpy as np
import pytest
from predict_helpers import CASES, ReplayModel, case_inputs, compare

from cotracker3_plugin.predict import OnlineSession, track


@pytest.fixture(scope="module")
def fx(reference_dir):
    with np.load(reference_dir / "fixtures.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", list(CASES))
def test_track_matches_official_outputs(fx, name):
    video, online, kw = case_inputs(fx, name)
    model = ReplayModel(fx, name, online)
    tracks = track(video, model, rule="official", online=online, **kw)
    assert len(model.calls) == len(model.raw)  # the same number of model calls
    err, mism = compare(tracks, fx, name)
    assert err < 1e-3 and mism == 0, (err, mism)
    assert tracks.frame_size == video.shape[1:3]
    # the query points sent to the model, back in input pixels, are the forced points
    if not online:
        tq = tracks.queries[:, 0].astype(int)
        np.testing.assert_allclose(tracks.xy[tq, np.arange(len(tq))], tracks.queries[:, 1:], atol=1e-3)


@pytest.mark.parametrize("name", ["online_pred_grid5", "online_pred_queries", "online_pred_grid5_T21"])
@pytest.mark.parametrize("chunk", [1, 3, 8, 100])
def test_online_session_any_chunk_size(fx, name, chunk):
    video, _, kw = case_inputs(fx, name)
    model = ReplayModel(fx, name, online=True)
    session = OnlineSession(model, rule="official", **kw)
    emitted = []
    for a in range(0, len(video), chunk):
        part = session.push(video[a:a + chunk])
        if part is not None:
            assert int(part.meta["first_frame"]) == sum(p.num_frames for p in emitted)
            emitted.append(part)
    tracks = session.finish()
    # official call order: frames [0,16) once 16 frames are in, then the tail [8, T)
    starts = [0, 8]
    assert [c["video"].shape[1] for c in model.calls] == [16, len(video) - 8]
    assert len(model.calls) == len(starts)
    err, mism = compare(tracks, fx, name)
    assert err < 1e-3 and mism == 0
    if chunk == 1:
        # frames [0, 8) are final after the call on [0, 16); for T = 24 the call on [8, 24)
        # runs as soon as frame 23 arrives and makes [8, 16) final too
        assert [p.num_frames for p in emitted] == ([8, 8] if len(video) == 24 else [8])


def test_online_video_frames_are_the_official_chunks(fx):
    video, _, kw = case_inputs(fx, "online_pred_grid5")
    model = ReplayModel(fx, "online_pred_grid5", online=True)
    track(video, model, rule="official", online=True, **kw)
    v0, v1 = model.calls[0]["video"], model.calls[1]["video"]
    # call 1 holds frames 8..23: its first half equals call 0's second half
    assert torch_equal(v0[:, 8:], v1[:, :8])


def torch_equal(a, b) -> bool:
    return bool((a == b).all())

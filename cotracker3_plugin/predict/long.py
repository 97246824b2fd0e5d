"""Offline model on long clips in bounded memory: overlapping windows with query hand-over.

The offline network sees a whole clip at once, so its memory grows with the clip length.
``windowed_offline_pass`` runs it on windows of ``window`` frames that overlap by ``overlap``
frames. A track that started in an earlier window is handed over to the next one as a new
query: at the frame of the overlap where the stitched track so far is most confident
(vis * conf), at its estimated position there. The next window's output replaces the
previous one from that frame on.

Trade-offs (documented for users in ``track``):
- each hand-over re-anchors the query patch on an *estimate*, so drift can accumulate over
  many windows (the online model has the same property); a longer overlap gives more
  choice of a confident hand-over frame, a longer window fewer hand-overs;
- a query is first tracked in the first window that contains its frame; frames of earlier
  windows get no estimate (position of the window's first frame, confidence 0) unless
  ``backward_tracking`` runs the same procedure on the reversed clip;
- the result is *not* the official offline output (that is one window over the whole clip).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cotracker3_plugin.predict.offline import Raw, call_model


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """Window starts: a step of ``window - overlap``; the last window ends at the last frame."""
    if num_frames <= window:
        return [0]
    step = window - overlap
    starts = list(range(0, num_frames - window, step))
    starts.append(num_frames - window)
    return starts


def windowed_offline_pass(model, frames: Callable[[int, int], torch.Tensor], num_frames: int,
                          queries: torch.Tensor, *, window: int, overlap: int, iters: int = 6,
                          support: torch.Tensor | None = None,
                          progress: Callable[[int, int], None] | None = None) -> Raw:
    """Raw outputs (1, T, N, ...) for ``queries`` (1, N, 3) in model space.

    ``frames(a, b)`` returns model-resolution frames [a, b) as (1, b-a, 3, h, w) float.
    ``support`` (1, M, 3) points at local t = 0 are added to every window and dropped.
    Output buffers live on the CPU; only one window of frames is held at a time.
    """
    n = queries.shape[1]
    tq = queries[0, :, 0].cpu()
    coords = torch.zeros(num_frames, n, 2)
    vis = torch.zeros(num_frames, n)
    conf = torch.zeros(num_frames, n)
    started = torch.zeros(n, dtype=torch.bool)
    starts = window_starts(num_frames, window, overlap)
    prev_end = 0
    for k, s in enumerate(starts):
        e = min(s + window, num_frames)
        new = ~started & (tq < e)
        carried = started.clone()
        active = new | carried
        # per track: first frame this window writes, and the (local) query it gets
        first = torch.full((n,), s, dtype=torch.long)
        local_q = queries[0].cpu().clone()
        orig_here = carried & (tq >= s)  # original query inside the overlap: reuse it exactly
        handover = carried & ~orig_here
        if handover.any():
            score = (vis[s:prev_end] * conf[s:prev_end])[:, handover]
            h = s + score.argmax(dim=0)
            idx = handover.nonzero()[:, 0]
            first[idx] = h
            local_q[idx, 0] = h.float()
            local_q[idx, 1:] = coords[h, idx]
        first[orig_here] = tq[orig_here].long()
        local_q[:, 0] -= s
        ids = active.nonzero()[:, 0]
        q = local_q[ids][None].to(queries.device)
        if support is not None:
            q = torch.cat([q, support.to(q)], dim=1)
        out = call_model(model, frames(s, e), q, iters)
        c, v, f = (o[0, :, :len(ids)].cpu() for o in out)
        for j, i in enumerate(ids.tolist()):
            a = int(first[i]) - s
            coords[s + a:e, i] = c[a:, j]
            vis[s + a:e, i] = v[a:, j]
            conf[s + a:e, i] = f[a:, j]
        # tracks starting in this window: hold their first estimate before the window
        if s > 0 and new.any():
            coords[:s, new] = c[0, new[ids]][None]
        started |= new
        prev_end = e
        if progress is not None:
            progress(k + 1, len(starts))
    return coords[None], vis[None], conf[None]

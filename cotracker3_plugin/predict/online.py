"""Streaming the online model (the official online demo loop), in model space.

The official demo runs the model every ``step = window_len // 2 = 8`` frames on the last
``window_len = 16`` frames, and after the last frame on the final ``((T-1) mod 8) + 9`` frames.
:class:`Streamer` does exactly the same calls, but eagerly: a window is processed as soon as
its 16 frames are in, instead of when the next frame arrives (same calls, same results).

After a call on frames ``[s, s+16)`` frames before ``s + 8`` are final: later windows start at
``s + 8`` or later and never rewrite them.
"""

from __future__ import annotations

import itertools
from collections import deque

import torch

from cotracker3_plugin.predict.offline import Raw, call_model

#: The online model's streaming state (CoTrackerThreeOnline); saved and restored per Streamer so
#: several streams (sessions, track() calls) can share one model instance.
STATE_ATTRS = ("online_ind", "online_track_support", "online_coords_predicted",
               "online_vis_predicted", "online_conf_predicted", "online_features")
_tokens = itertools.count(1)


class Streamer:
    """Feeds model-resolution frames to an online model in official streaming order.

    Holds only the last ``window_len`` frames; the model itself keeps its output buffers
    (coords / logits of all frames seen so far).
    """

    def __init__(self, model, queries: torch.Tensor, iters: int = 6, record: list | None = None):
        self.model = model
        self.queries = queries
        self.iters = iters
        self.window = int(getattr(model, "window_len", 16))
        self.step = self.window // 2
        self.frames: deque[torch.Tensor] = deque(maxlen=self.window)
        self.num_frames = 0  # frames fed so far
        self.processed_end = 0  # end (exclusive) of the last processed window
        self.calls = 0
        self.raw: Raw | None = None
        self.record = record
        self._token = next(_tokens)
        self._state: dict | None = None
        self.activate()

    def activate(self) -> None:
        """Make the model hold this stream's state (restoring it if another stream ran since)."""
        if getattr(self.model, "_stream_owner", None) == self._token:
            return
        if self._state is None:
            self.model.init_video_online_processing()
        else:
            for k, v in self._state.items():
                setattr(self.model, k, list(v) if isinstance(v, list) else v)
        self.model._stream_owner = self._token

    def save(self) -> None:
        state = {k: getattr(self.model, k) for k in STATE_ATTRS if hasattr(self.model, k)}
        # the model updates its per-level patch list in place: keep our own copy
        self._state = {k: list(v) if isinstance(v, list) else v for k, v in state.items()}

    @property
    def num_final(self) -> int:
        """Frames whose predictions no later call will change."""
        return 0 if self.calls == 0 else self.processed_end - self.step

    @property
    def next_window_start(self) -> int:
        return self.calls * self.step

    def _run(self, start: int, end: int) -> None:
        # the deque holds frames [num_frames - len, num_frames)
        first = self.num_frames - len(self.frames)
        chunk = torch.cat(list(self.frames)[start - first:end - first], dim=1)
        self.activate()
        self.raw = call_model(self.model, chunk, self.queries, self.iters, is_online=True)
        if self.record is not None:
            self.record.append(self.raw)
        self.save()
        self.calls += 1
        self.processed_end = end

    def feed(self, video: torch.Tensor) -> bool:
        """Append (1, k, 3, h, w) frames; run every window that became complete. True if any ran."""
        ran = False
        for i in range(video.shape[1]):
            self.frames.append(video[:, i:i + 1])
            self.num_frames += 1
            start = self.next_window_start
            if self.num_frames == start + self.window:
                self._run(start, self.num_frames)
                ran = True
        return ran

    def flush(self) -> bool:
        """Process the tail (frames after the last full window), like the demo's final call."""
        if self.num_frames == 0 or self.processed_end == self.num_frames:
            return False
        start = self.next_window_start
        self._run(start, self.num_frames)
        return True

"""Helpers shared by the CLI subcommands: device choice, model loading, progress bars,
stage timings and the ``summary.json`` writer.

Keep this module small and its names stable: every subcommand imports it. It imports
torch lazily so that ``cotracker3 --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cotracker3_plugin._atomic import atomic_path
from cotracker3_plugin.device import resolve_device  # noqa: F401  (re-exported for the subcommands)
from cotracker3_plugin.errors import UserError

log = logging.getLogger("cotracker3_plugin.cli")

_DECODE_KEYS = ("stride", "max_frames", "start_time", "end_time", "max_side")


@dataclasses.dataclass
class DecodeOptions:
    """Which frames of the video are decoded, and at what size (flat flags: ``--stride`` ...)."""

    stride: int = 1
    """Keep every stride-th frame of the video."""
    max_frames: int | None = None
    """Keep at most this many frames (after --stride)."""
    start_time: float | None = None
    """Start reading at this time (seconds)."""
    end_time: float | None = None
    """Stop reading at this time (seconds, exclusive)."""
    max_side: int = 960
    """Downsize frames so that the longer side is at most this many pixels (tracks are in pixels of the downsized frames); 0 keeps the original size. The model itself runs at 384x512."""

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``io.video.read_video`` / ``iter_frames``."""
        return dict(stride=self.stride or 1, max_frames=self.max_frames, start_time=self.start_time,
                    end_time=self.end_time, max_side=None if self.max_side in (0, None) else int(self.max_side))

    @classmethod
    def from_summary(cls, options: dict[str, Any]) -> DecodeOptions:
        """The options a ``summary.json`` recorded (nested under "decode", or flat in older files)."""
        o = options.get("decode", options)
        return cls(**{k: o[k] for k in _DECODE_KEYS if o.get(k) is not None})


def load_model_verbose(name_or_path: str | os.PathLike[str] | None, *, online: bool | None = None,
                       device: Any = "cpu") -> Any:
    """``weights.load_model`` with a log line naming the model and the device."""
    from cotracker3_plugin.weights import load_model

    label = str(name_or_path) if name_or_path is not None else "bundled default"
    mode = "" if online is None else (" (online)" if online else " (offline)")
    log.info("Loading model %s%s on %s", label, mode, device)
    return load_model(name_or_path, online=online, device=device)


def versions() -> dict[str, str]:
    """Versions of the packages that shape the results (for summary.json)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("cotracker3_plugin", "torch", "numpy", "av", "cv2", "pycolmap"):
        m = sys.modules.get(mod)
        if m is None:
            with contextlib.suppress(ImportError):
                m = __import__(mod)
        if m is not None:
            out[mod] = str(getattr(m, "__version__", "unknown"))
    return out


def write_summary(path: str | os.PathLike[str], data: dict[str, Any], *,
                  add_versions: bool = True) -> Path:
    """Write ``data`` as indented JSON, atomically, adding a ``versions`` entry by default.

    Non-JSON values (paths, numpy scalars and arrays, torch devices) are converted to strings
    or plain numbers.
    """
    payload = dict(data)
    if add_versions and "versions" not in payload:
        payload["versions"] = versions()
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars / arrays, torch tensors
        return obj.tolist()
    return str(obj)


class Stopwatch:
    """Wall-clock time per named stage: ``with sw("decode"): ...``; ``sw.times`` in seconds."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - t0

    def rounded(self, digits: int = 3) -> dict[str, float]:
        out = {k: round(v, digits) for k, v in self.times.items()}
        out["total"] = round(sum(self.times.values()), digits)
        return out


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str, *, enabled: bool = True,
                 unit: str = "it") -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr; yields ``advance(n)``. Disabled (no output) when ``enabled`` is False."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False,
               dynamic_ncols=True, file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


def show_progress() -> bool:
    """Progress bars only when stderr is a terminal (keeps CI logs and pipes clean)."""
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress_callback(desc: str, *, enabled: bool = True,
                      unit: str = "it") -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar driven by ``callback(done, total)`` calls, the ``progress=`` signature of
    :func:`cotracker3_plugin.predict.track` (the total may change between calls)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=None, desc=desc, unit=unit, disable=not enabled, leave=False,
               dynamic_ncols=True, file=sys.stderr)

    def callback(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(max(0, done - bar.n))

    try:
        yield callback
    finally:
        bar.close()


def _final_path(path: str) -> str:
    """The path a user asked for, without the temporary names of the atomic writers
    (``.NAME.XXXXXXXX.partial`` folders, ``.NAME.XXXXXXXX.tmp`` files)."""
    return re.sub(r"(^|/)\.([^/]+?)\.[A-Za-z0-9_]{8}\.(?:partial|tmp)(?=/|$)", r"\1\2", path)


def run_reporting_errors(fn: Callable[[], Any], *, verbose: bool = False) -> int:
    """Run ``fn`` and turn user-facing failures into one-paragraph messages and exit codes.

    UserError -> its message, exit 2; Ctrl-C -> exit 130 (atomic outputs were already removed
    by the writers); a full disk -> a message naming it, exit 2. With ``verbose`` the
    exceptions propagate with their traceback. Other exceptions always propagate (bugs).
    """
    import errno

    try:
        return int(fn() or 0)
    except UserError as e:
        if verbose:
            raise
        print(f"\nError: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted: partial outputs were removed.", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT) or verbose:
            raise
        where = _final_path(str(e.filename)) if e.filename else "the outputs"
        print(f"\nError: the disk is full ({e.strerror}) while writing {where}. "
              "Partial outputs were removed. Free some space or choose an --output on another disk.",
              file=sys.stderr)
        return 2


@contextlib.contextmanager
def training_progress(num_steps: int, **counters: str) -> Iterator[Callable[[int, dict[str, float]], None]]:
    """A step callback for the trainers that draws a tqdm bar with the loss and learning rate.

    The bar starts at the first step seen, so a resumed run starts where it stopped;
    ``counters`` maps extra bar labels to keys of the step's loss dict (shown as integers).
    """
    from tqdm import tqdm

    bar = None

    def on_step(step: int, losses: dict[str, float]) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=num_steps, initial=step - 1, unit="step", dynamic_ncols=True)
        bar.update(1)
        extra = {label: int(losses.get(key, 0)) for label, key in counters.items()}
        bar.set_postfix(loss=f"{losses['total']:.3f}", lr=f"{losses['lr']:.2e}", **extra)

    try:
        yield on_step
    finally:
        if bar is not None:
            bar.close()

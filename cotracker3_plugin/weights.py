"""Checkpoints: official names, local files, the bundled small model.

One entry point, :func:`load_model`::

    load_model()                          # the bundled small checkpoint (if the package has one)
    load_model("cotracker3_offline")      # official weights, downloaded once into the cache
    load_model("path/to/scaled_online.pth")
    load_model("my_model.safetensors", device="cuda")

Official ``.pth`` files are plain state dicts (optionally wrapped in ``{"model": ...}`` or
``{"state_dict": ...}``) and are read with ``torch.load(weights_only=True)``, which never runs
pickled code. Our own checkpoints (:func:`save_checkpoint`) are safetensors files that store the
:class:`~cotracker3_plugin.model.CoTrackerConfig` as JSON in their metadata, so non-official
architectures (e.g. the small variant) rebuild themselves.

Downloads go to ``$COTRACKER3_CACHE`` or ``~/.cache/cotracker3``. The official weights are
released by Meta under CC-BY-NC 4.0 (non-commercial); see the official repository.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cotracker3_plugin.errors import CheckpointError
from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline
from cotracker3_plugin.model.cotracker3 import CoTrackerThreeBase

logger = logging.getLogger(__name__)

_HF = "https://huggingface.co/facebook/cotracker3/resolve/main"
#: Where the package looks for its bundled (small, self-trained) checkpoint.
BUNDLED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "cotracker3_small.safetensors"
#: Metadata keys of our safetensors checkpoints.
META_CONFIG = "cotracker3_config"
META_KIND = "cotracker3_kind"
_MAX_LISTED = 5


@dataclass(frozen=True)
class OfficialCheckpoint:
    """An official checkpoint that :func:`load_model` can download by name."""

    url: str
    online: bool
    sha256: str | None = None
    """Expected SHA-256 of the file; None where it has not been published or verified (the
    download is then not checked, only its keys and shapes are)."""
    description: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    "cotracker3_offline": OfficialCheckpoint(
        f"{_HF}/scaled_offline.pth", online=False, description="offline, Kubric + 15k real videos"
    ),
    "cotracker3_online": OfficialCheckpoint(
        f"{_HF}/scaled_online.pth", online=True, description="online, Kubric + 15k real videos"
    ),
    "cotracker3_baseline_offline": OfficialCheckpoint(
        f"{_HF}/baseline_offline.pth", online=False, description="offline, Kubric only"
    ),
    "cotracker3_baseline_online": OfficialCheckpoint(
        f"{_HF}/baseline_online.pth", online=True, description="online, Kubric only"
    ),
}


def cache_dir() -> Path:
    """``$COTRACKER3_CACHE`` if set, else ``~/.cache/cotracker3``."""
    env = os.environ.get("COTRACKER3_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cotracker3"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_official(name: str, progress: bool = True) -> Path:
    """Path of the cached official checkpoint ``name``, downloading it first if needed."""
    spec = OFFICIAL_CHECKPOINTS[name]
    target = cache_dir() / spec.filename
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        logger.info("downloading %s from %s to %s", name, spec.url, target)
        try:
            torch.hub.download_url_to_file(spec.url, str(tmp), progress=progress)
        except Exception as e:  # network errors come in many types
            raise CheckpointError(
                f"Could not download the {name} checkpoint from {spec.url} ({type(e).__name__}: {e}). "
                f"Check the network, or download the file yourself and pass its local path instead "
                f"of the name (e.g. --checkpoint /path/to/{spec.filename}); you can also place it at {target}."
            ) from e
        if spec.sha256 is not None and _sha256(tmp) != spec.sha256:
            raise CheckpointError(
                f"The download of {spec.url} is corrupt (SHA-256 mismatch). Delete any partial file "
                f"and try again, or download it yourself and pass its local path."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


# -- reading files ---------------------------------------------------------------------------


def _summarise(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"{len(items)} ({shown}{more})"


def _read_pth(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a .pth: a plain or wrapped state dict, or a resumable training
    checkpoint of ``cotracker3 train``/``finetune`` (its architecture is in ``meta``)."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses the file
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's own message suggests weights_only=False, which would run pickled code: not shown.
        code = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = (f"it asks to call {code.group(1)}, which was refused (a pickle that runs code)" if code else
                "it is corrupt, not a checkpoint, or it pickles objects other than tensors")
        raise CheckpointError(
            f"{path} is not a loadable PyTorch checkpoint ({type(e).__name__}): {what}. "
            "Only plain state dicts are read (pickled code is never "
            "executed, and this package will not load such a file); pass an official "
            "CoTracker3 .pth or a .safetensors file written by cotracker3_plugin."
        ) from e
    meta: dict[str, str] = {}
    if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) and "model_config" in obj["meta"]:
        meta = {META_CONFIG: json.dumps(obj["meta"]["model_config"]),
                META_KIND: "online" if obj["meta"].get("online") else "offline"}
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} does not hold a state dict (a mapping of parameter names to tensors). Pass an "
            "official CoTracker3 checkpoint (scaled_offline.pth, scaled_online.pth, ...) or a .safetensors "
            "file written by cotracker3_plugin."
        )
    # DistributedDataParallel checkpoints prefix every key with "module.".
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj), meta


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({type(e).__name__}: {e}). Pass a checkpoint "
            "written by cotracker3_plugin (save_checkpoint) or an official .pth file."
        ) from e
    if not state:
        raise CheckpointError(f"{path} holds no tensors. Pass a CoTracker3 checkpoint.")
    return state, dict(meta)


def _infer_config(
    state: dict[str, torch.Tensor], meta: dict[str, str], path: Path
) -> tuple[CoTrackerConfig, bool]:
    """(config, online) from the metadata, else the official architecture sized by ``time_emb``."""
    if META_CONFIG in meta:
        try:
            config = CoTrackerConfig.from_dict(json.loads(meta[META_CONFIG]))
        except (ValueError, TypeError) as e:
            raise CheckpointError(
                f"{path} stores an invalid model configuration ({e}). Re-save it with save_checkpoint."
            ) from e
        online = meta.get(META_KIND, "offline") == "online"
        return config, online
    time_emb = state.get("time_emb")
    window = int(time_emb.shape[1]) if time_emb is not None and time_emb.ndim == 3 else 60
    config = CoTrackerConfig.online() if window == 16 else CoTrackerConfig.offline()
    config.window_len = window
    return config, window == 16


def _check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if extra:
        problems.append(f"unexpected keys: {_summarise(extra)}")
    if wrong:
        problems.append(f"shape mismatches: {_summarise(wrong)}")
    if problems:
        raise CheckpointError(
            f"{path} does not match the CoTracker3 architecture: {'; '.join(problems)}. Pass an official "
            "CoTracker3 checkpoint or one written by cotracker3_plugin.save_checkpoint (it stores its "
            "architecture); a CoTracker2 checkpoint is not compatible."
        )


def build_model(config: CoTrackerConfig, online: bool) -> CoTrackerThreeBase:
    """An untrained model of the given configuration and kind."""
    return CoTrackerThreeOnline(config) if online else CoTrackerThreeOffline(config)


def _resolve(name_or_path: str | os.PathLike[str] | None) -> Path:
    if name_or_path is None:
        if BUNDLED_CHECKPOINT.is_file():
            return BUNDLED_CHECKPOINT
        raise CheckpointError(
            f"No bundled model is present in this installation ({BUNDLED_CHECKPOINT} is missing). "
            f"Pass a checkpoint: an official name ({', '.join(OFFICIAL_CHECKPOINTS)}), which is "
            "downloaded once, or the path of a local .pth / .safetensors file."
        )
    text = os.fspath(name_or_path)
    if text in OFFICIAL_CHECKPOINTS:
        return download_official(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"{text!r} is neither a known checkpoint name ({', '.join(OFFICIAL_CHECKPOINTS)}) nor an "
            "existing file. Pass one of those names or the path of a .pth / .safetensors checkpoint."
        )
    return path


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    online: bool | None = None,
    device: str | torch.device = "cpu",
) -> CoTrackerThreeBase:
    """Build a CoTracker3 model and load its weights; returned in eval mode on ``device``.

    Args:
        name_or_path: None for the bundled small checkpoint; an official name
            (:data:`OFFICIAL_CHECKPOINTS`); or a local ``.pth`` / ``.safetensors`` file.
        online: force the online (True) or offline (False) model. By default it follows the
            checkpoint (our metadata, or for ``.pth`` the time embedding: 16 frames = online).
            Both kinds share all parameters; when forcing the other kind its time embedding is
            recomputed for that kind's default window (16 online, 60 offline).
        device: where to put the model.

    Raises:
        CheckpointError: unknown name, missing file, failed download, not a checkpoint, or keys /
            shapes that do not match the architecture.
    """
    path = _resolve(name_or_path)
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
    else:
        state, meta = _read_pth(path)
    config, file_online = _infer_config(state, meta, path)
    if online is not None and online != file_online:
        # time_emb is a fixed sin-cos table of the window length: rebuild it for the new kind.
        config.window_len = 16 if online else 60
        state = {k: v for k, v in state.items() if k != "time_emb"}
        state["time_emb"] = build_model(config, online).time_emb
    kind_online = file_online if online is None else online
    model = build_model(config, kind_online)
    _check_state(model, state, path)
    if state["time_emb"].dtype != model.time_emb.dtype:
        # A half-precision file would round the fixed sin-cos table; use the exact one.
        state["time_emb"] = model.time_emb
    model.load_state_dict(state, strict=True)
    logger.info("loaded %s model from %s", "online" if kind_online else "offline", path)
    # Which weights these are, for the tracks' metadata (reconstruction treats the bundled model's
    # coarse tracks differently).
    model.weights_label = "bundled default" if name_or_path is None else str(name_or_path)
    return model.to(device).eval()


def save_checkpoint(
    model: CoTrackerThreeBase,
    path: str | os.PathLike[str],
    *,
    half: bool = False,
    **extra_metadata: Any,
) -> Path:
    """Write ``model``'s weights as safetensors with its config (JSON) in the metadata.

    ``half`` stores the parameters in float16 (half the size; :func:`load_model` converts back
    to float32). Written atomically. Extra keyword arguments are stored as string metadata.
    Returns the path written.
    """
    from safetensors.torch import save_file

    from cotracker3_plugin._atomic import atomic_path

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v if k == "time_emb" else v.half() for k, v in state.items()}
    meta = {
        META_CONFIG: json.dumps(model.config.to_dict()),
        META_KIND: "online" if isinstance(model, CoTrackerThreeOnline) else "offline",
        "format": "cotracker3_plugin",
    }
    meta.update({k: str(v) for k, v in extra_metadata.items()})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


__all__ = [
    "BUNDLED_CHECKPOINT",
    "OFFICIAL_CHECKPOINTS",
    "OfficialCheckpoint",
    "build_model",
    "cache_dir",
    "download_official",
    "load_model",
    "save_checkpoint",
]

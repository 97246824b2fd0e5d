"""Which torch device to run on: one place for the CLI, the Python API and the integrations."""

from __future__ import annotations

from typing import Any

from cotracker3_plugin.errors import UserError

__all__ = ["resolve_device"]


def resolve_device(device: str = "auto") -> Any:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is checked and returned.

    Returns a ``torch.device``. Raises :class:`UserError` for an unknown or unavailable device.
    """
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"--device {device!r} is not a device name ({e}). "
                        "Use auto, cpu, cuda, cuda:0 or mps.") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for but CUDA is not available in this torch "
                        f"build ({torch.__version__}). Use --device cpu or --device auto.")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError("--device mps was asked for but Apple MPS is not available. "
                            "Use --device cpu or --device auto.")
    return dev

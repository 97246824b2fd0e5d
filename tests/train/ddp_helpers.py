"""Two-process DDP runs of the trainers on CPU (gloo), shared by the trainer and finetune tests.

A module of its own (not a test module) so that ``torch.multiprocessing.spawn`` children can
import the worker by name.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, run: Callable, cfg, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    r = run(cfg)
    torch.save({"state": r.model.state_dict(), "losses": [s["total"] for s in r.losses]}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def run_two_ranks(run: Callable, cfg, out: Path) -> tuple[dict, dict]:
    """``run(cfg)`` on ranks 0 and 1; returns each rank's final state dict and per-step losses."""
    mp.spawn(_worker, args=(2, free_port(), run, cfg, str(out)), nprocs=2, join=True)
    return tuple(torch.load(out / f"rank{r}.pt") for r in range(2))  # type: ignore[return-value]

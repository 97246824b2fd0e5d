"""Newcomer check: the README's set-up commands are the ones the code supports.

The install steps of the quick-start command are checked for the facts that keep a fresh machine
on the CPU torch (torch==2.13.0 first, then a constraint); the job itself (everything after the
installs) is run verbatim, in a temporary folder, against this environment. So the README cannot
drift from the code.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_command(name: str) -> str:
    spec = importlib.util.spec_from_file_location("readme_command", ROOT / "scripts" / "readme_command.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.readme_command(name)


def _steps(name: str) -> tuple[list[str], list[str]]:
    steps = [s.strip() for s in _readme_command(name).split("&&")]
    install = [s for s in steps if s.startswith(("python3.11 -m venv", ". .venv/bin/activate", "pip install"))]
    return install, [s for s in steps if s not in install]


@pytest.mark.parametrize("name", ["quickstart", "test"])
def test_install_steps_keep_the_cpu_torch(name):
    install, _ = _steps(name)
    pips = [s for s in install if s.startswith("pip install")]
    assert pips[0] == "pip install torch==2.13.0", "torch 2.13.0 must be installed first"
    assert all("-c constraints.txt" in s or "--no-deps" in s for s in pips[1:]), pips
    assert not any("torchvision" in s for s in install)
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_command.py test" in ci
    _, job = _steps("test")
    assert job == ["python -m pytest -q"]


def test_quickstart_job_runs_verbatim(tmp_path):
    _, job = _steps("quickstart")
    assert job and job[0].startswith("cotracker3 run "), job
    assert "--model" not in job[0] and "--tracker" not in job[0], "the quick start must use the bundled model"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    for step in job:
        argv = shlex.split(step)
        assert argv[0] == "cotracker3"
        proc = subprocess.run([sys.executable, "-m", "cotracker3_plugin", *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stderr[-3000:]
        if argv[1] == "run":
            assert "cotracker3 view" in proc.stdout
    out = tmp_path / "outputs" / "quickstart"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_registered"] >= 2 and summary["points"] > 0, summary
    runtime = summary["runtime_s"]  # written inside the atomic export, so the export is timed too
    assert set(runtime) == {"decode", "track", "reconstruct", "densify", "export", "total"} and runtime["export"] > 0
    assert runtime["total"] == pytest.approx(sum(v for k, v in runtime.items() if k != "total"), abs=0.01)
    transforms = json.loads((out / "transforms.json").read_text())
    assert len(transforms["frames"]) == summary["frames_registered"]
    assert (out / "sparse_pc.ply").is_file() and (out / "colmap" / "sparse" / "0" / "cameras.bin").is_file()
    # The dense cloud is what splatfacto starts from; the SfM points stay beside it.
    assert summary["dense_points"] > summary["points"] and (out / "sfm_pc.ply").is_file(), summary
    assert summary["camera"]["calibration"]["focal"] > 0 and "focal" in proc.stdout
    assert summary["frames"] == 87 and summary["model"].startswith("bundled") and summary["tracks"] > 0, summary
    assert summary["camera"]["tracks_refined"], summary  # the bundled model's tracks are sharpened by LK

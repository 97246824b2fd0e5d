"""The second set-up: this package added to a nerfstudio 1.1.5 environment (its own pins).

Slow (creates a venv and installs nerfstudio with all its dependencies from the package
index, ~10 minutes and a few GB): ``python -m pytest -m slow tests/integrations/test_nerfstudio_env.py``.
Set ``COTRACKER3_NERFSTUDIO_VENV`` to reuse an existing nerfstudio venv instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_plugin_joins_nerfstudio_env_without_changing_it(tmp_path):
    venv = Path(os.environ.get("COTRACKER3_NERFSTUDIO_VENV", tmp_path / "venv"))
    python = shutil.which("python3.11") or sys.executable
    env = {**os.environ, "PYTHON": python}
    before = None
    if (venv / "bin" / "python").exists():
        before = subprocess.run([venv / "bin" / "pip", "freeze", "--exclude-editable"], check=True,
                                capture_output=True, text=True).stdout
    subprocess.run(["bash", ROOT / "scripts" / "install_nerfstudio_env.sh", venv], check=True, env=env)
    after = subprocess.run([venv / "bin" / "pip", "freeze", "--exclude-editable"], check=True,
                           capture_output=True, text=True).stdout
    pins = {line.split("==")[0].lower(): line.split("==")[1] for line in after.splitlines() if "==" in line}
    # nerfstudio 1.1.5's own pins are still what it asked for.
    assert pins["nerfstudio"] == "1.1.5"
    assert pins["viser"] == "0.2.7"
    assert pins["opencv-python-headless"] == "4.10.0.84"
    assert pins["numpy"].startswith("1.")
    assert pins["gsplat"] == "1.4.0"
    if before is not None:  # an existing env: nothing that was there changed version
        old = {line for line in before.splitlines() if "==" in line}
        assert old <= set(after.splitlines()), sorted(old - set(after.splitlines()))
    # The integration's tests pass with those versions.
    subprocess.run([venv / "bin" / "pip", "install", "-q", "pytest", "pytest-timeout"], check=True)
    subprocess.run([venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "tests/integrations/test_nerfstudio.py", "tests/integrations/test_nerfstudio_cli.py"],
                   check=True, cwd=ROOT)

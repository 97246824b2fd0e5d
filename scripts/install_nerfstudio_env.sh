#!/usr/bin/env bash
# Add cotracker3-plugin to a nerfstudio 1.1.5 environment without changing any of its packages.
#
#   bash scripts/install_nerfstudio_env.sh [VENV]
#
# With an existing venv (one where `pip install nerfstudio==1.1.5` was run): installs this
# package into it, constrained to the versions already there (`pip freeze`), so nerfstudio's
# pins (numpy<2, viser==0.2.7, opencv-python-headless==4.10.0.84, gsplat 1.4.0, its torch and
# torchvision) stay exactly as they are; pip fails rather than change one of them.
# Without an existing venv: creates VENV (default .venv-nerfstudio) with the CPU torch 2.13.0
# and nerfstudio 1.1.5 with all its own dependencies first (a large download).
# Then it checks that ns-process-data-track runs and that nerfstudio still imports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-nerfstudio}"
PYTHON="${PYTHON:-python3.11}"

if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install torch==2.13.0
    # constraints.txt holds torch: nerfstudio's unpinned torchvision would otherwise pull a CUDA torch.
    "$VENV/bin/pip" install -c "$ROOT/constraints.txt" nerfstudio==1.1.5
fi

FREEZE="$(mktemp)"
trap 'rm -f "$FREEZE"' EXIT
# Everything installed now is a constraint (editable installs and this package excluded).
"$VENV/bin/pip" freeze --exclude-editable | grep -v -i '^cotracker3-plugin' | grep -v '^-e ' > "$FREEZE"
"$VENV/bin/pip" install -c "$FREEZE" -e "$ROOT"

"$VENV/bin/pip" check || echo "note: pip check lists conflicts (see above) that were there before or are nerfstudio's own"
"$VENV/bin/python" -m cotracker3_nerfstudio.cli --help > /dev/null
"$VENV/bin/python" -c "import nerfstudio.process_data.colmap_utils, nerfstudio.data.dataparsers.nerfstudio_dataparser, cotracker3_nerfstudio.process_data, cotracker3_plugin; print('ok: nerfstudio', __import__('importlib.metadata').metadata.version('nerfstudio'))"

"""The top-level API: cheap to import, and every advertised name resolves."""

import subprocess
import sys

import cotracker3_plugin as ct


def test_every_public_name_resolves():
    for name in ct.__all__:
        assert getattr(ct, name) is not None, name


def test_core_import_pulls_no_integration_or_torch():
    code = ("import sys, cotracker3_plugin; "
            "print(','.join(m for m in ('torch', 'viser', 'nerfstudio', 'pycolmap') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""

"""The wheel carries the YAML presets, and an installed lobgym finds them by name."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from helpers import ROOT


@pytest.mark.slow
def test_wheel_ships_every_preset(tmp_path):
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("lobgym-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("envs", "agents"):
        presets = sorted(p.name for p in (ROOT / kind).glob("*.yaml"))
        assert presets, f"no presets in {kind}/"
        for name in presets:
            assert f"lobgym/presets/{kind}/{name}" in names
    assert "lobgym/cli.py" in names and "lobgym/market/reduced_form/step.py" in names


def test_presets_resolve_by_name_and_by_path():
    from lobgym import presets

    by_name = presets.resolve("envs", "as2008")
    assert by_name.name == "as2008.yaml" and by_name.is_file()
    assert presets.resolve("envs", str(by_name)) == by_name
    with pytest.raises(ValueError, match="as2008"):  # the error lists what exists
        presets.resolve("envs", "as2009")

"""The package installs like any other (`pip install git+URL` in Colab) and finds its registry from itself."""

import subprocess
import sys
import zipfile

from .environment import ROOT


def test_a_built_package_carries_the_registry_and_loads_it_from_anywhere(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT], check=True, cwd=tmp_path)
    wheel = next(wheels.glob("sd_model_zoo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "helpers/models.yaml" in names and "helpers/bench/harness.py" in names
    with zipfile.ZipFile(wheel) as z:
        assert z.read("helpers/models.yaml") == (ROOT / "models.yaml").read_bytes(), "a copy of the top-level file"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    code = "import helpers; print(helpers.registry.REGISTRY_PATH); print(len(helpers.models()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})  # fmt: skip
    path, count = out.stdout.split()
    assert path == str(site / "helpers" / "models.yaml") and int(count) > 30

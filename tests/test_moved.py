"""Old module paths keep working for one release: they warn, name the new path and hand over the same objects."""

import subprocess
import sys

from .environment import ROOT

CODE = """
import warnings

import helpers
from helpers.train import data

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from helpers.traindata import buckets
    from helpers import trainexport
    find = trainexport.find
    import helpers.generate
    import helpers.registry
    from helpers.train import TrainConfig
    from helpers import train
    run = train.train
assert TrainConfig is helpers.train.loop.TrainConfig and run is helpers.train.loop.train, "the old module's names"
assert buckets is data.buckets, "the old path hands over the object itself"
assert find is helpers.base.adapters.find, "a renamed module's too"
assert callable(helpers.generate), "importing the old module path leaves the function helpers.generate alone"
assert helpers.registry is helpers.zoo.registry, "the public module attribute stays the module itself"
for w in caught:
    print(w.category.__name__, w.filename, w.message)
"""


def test_an_old_module_path_warns_where_it_is_used_and_names_the_new_one():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("DeprecationWarning <string>")]
    assert len(lines) == 4, out.stdout
    assert "helpers.traindata moved to helpers.train.data: import from helpers.train.data" in lines[0]
    assert "helpers.trainexport moved to helpers.base.adapters" in lines[1]
    assert "helpers.train.TrainConfig moved to helpers.train.loop.TrainConfig" in lines[2]
    assert "helpers.train.train moved to helpers.train.loop.train" in lines[3]

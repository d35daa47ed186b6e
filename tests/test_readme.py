"""The README stays true: its model tables come from models.yaml, its test command is what CI runs."""

import re

from helpers import readme, registry

from .environment import ROOT


def test_model_tables_are_fresh():
    assert readme.update(check=True), "README.md's model tables are stale: run `python -m helpers readme`"


def test_tables_list_every_entry():
    tables = readme.model_tables()
    reg = registry.default()
    for key in [*reg.models, *reg.vaes, *reg.adapters]:
        assert f"| `{key}` |" in tables


def test_ci_runs_the_readme_test_command():
    text = (ROOT / "README.md").read_text()
    command = re.search(r"## Run the tests\s+```bash\n(?:.*\n)*?(python3? -m pytest.*)\n```", text).group(1)
    assert command in (ROOT / ".ci" / "run").read_text()


def test_stale_table_is_detected(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n{readme.BEGIN}\n| old |\n{readme.END}\n{readme.MEMORY_BEGIN}\n{readme.MEMORY_END}\n")
    assert not readme.update(stale, check=True)
    assert readme.update(stale) is False and readme.update(stale, check=True)


def test_memory_table_comes_from_the_policy_code():
    table = readme.memory_table()
    assert "| `flux-dev` | gpu (nf4) |" in table and "| `sd15` | gpu |" in table

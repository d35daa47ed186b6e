"""Notebook conventions: thin, parametrised, badged, budgeted, committed without outputs.

(The notebooks themselves run under nbmake in the same test command, in smoke mode.)
"""

import ast
import re
import tomllib

import nbformat
import pytest

from .environment import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
EXPECTED = ["01_quickstart", "02_model_zoo", "03_text_to_image", "04_parameter_sweeps", "05_side_by_side"]


def test_the_collection_is_complete():
    assert EXPECTED == [p.stem for p in NOTEBOOKS][: len(EXPECTED)]
    assert "09_how_diffusion_works" in [p.stem for p in NOTEBOOKS]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def nb(request):
    return nbformat.read(request.param, as_version=4), request.param


def test_committed_without_outputs(nb):
    notebook, path = nb
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs before committing"


def test_title_badge_and_what_you_will_learn(nb):
    notebook, path = nb
    head = notebook.cells[0].source
    assert head.startswith("# ") and "What you will learn" in head and "What it needs" in head
    colab = f"https://colab.research.google.com/github/{REPO.split('github.com/')[1]}/blob/main/notebooks/{path.name}"
    assert colab in head, "the Open in Colab badge points at this notebook in the project's repository"
    assert f'REPO = "{REPO}"' in notebook.cells[1].source, "the set-up cell clones the project's repository"


def test_every_set_up_cell_is_the_same(nb):
    notebook, path = nb
    first = nbformat.read(NOTEBOOKS[0], as_version=4).cells[1].source
    assert notebook.cells[1].source == first, f"{path.name}: copy the set-up cell of {NOTEBOOKS[0].name}"
    assert "chdir" not in first and 'pip", "install"' in first.replace("'", '"')


def test_one_parameters_cell_of_literals(nb):
    notebook, path = nb
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell tagged 'parameters'"
    for stmt in ast.parse(tagged[0].source).body:
        assert isinstance(stmt, ast.Assign), f"{path.name}: the parameters cell holds only assignments"
        ast.literal_eval(stmt.value)  # raises if a value is not a literal


def test_no_definitions_in_notebooks(nb):
    notebook, path = nb
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Lambda)), (
                    f"{path.name}: logic belongs in helpers/, with a test"
                )


def test_time_budget_in_metadata(nb):
    notebook, path = nb
    budget = notebook.metadata["sdzoo"]["time_budget_s"]
    assert 0 < budget <= 600 and notebook.metadata["execution"]["timeout"] <= budget


def test_smoke_switch_is_read_only_through_helpers(nb):
    notebook, path = nb
    text = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "SDZOO_SMOKE" not in text and ("helpers.smoke.shrink(" in text or "helpers.smoke.cap(" in text)


def test_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert re.search(rf"\[`{path.stem}`\]\(notebooks/{path.name}\)", readme), f"README lists {path.name}"

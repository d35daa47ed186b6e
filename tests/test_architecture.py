"""The house: the wings' import rules hold, no import hides in a function, nothing is patched onto a pipeline.

The rules themselves are declared in pyproject.toml ([tool.importlinter]: the wings' order, who may not import
whom, no cycles) and checked by `lint-imports`; this file runs it, proves it catches an upward import, and checks
what it cannot see.

python -m pytest tests/test_architecture.py      # prints nothing more when the house is in order
"""

import ast
import shutil
import subprocess
import sys

import pytest

from .environment import ROOT

PACKAGE = ROOT / "helpers"
# The command line imports a command's modules when that command runs: `--help`, `list` and `show` load no torch,
# diffusers or transformers (tests/test_cli.py), and only `bench` loads the benchmark harness. At the top of the
# package, these imports cannot hide a cycle.
LAZY_ALLOWED = {("__main__", wing) for wing in ("base", "bench", "judge", "offline", "readme", "run", "sweeps", "train",
                                                 "zoo")}  # fmt: skip


def _name(path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def _imports(path):
    """(module-level, inside-a-function) package modules that `path` imports; TYPE_CHECKING blocks left out."""
    tree, here = ast.parse(path.read_text()), _name(path).split(".")
    top, inner = set(), set()

    def target(node):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                mod = [*base, *(node.module.split(".") if node.module else [])]
                return [".".join(mod)] if node.module else [".".join([*base, a.name]) for a in node.names]
            if node.module and node.module.startswith("helpers"):
                return [node.module.removeprefix("helpers").lstrip(".")]
        if isinstance(node, ast.Import):
            return [a.name.removeprefix("helpers").lstrip(".") for a in node.names if a.name.startswith("helpers.")]
        return []

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            for mod in target(child):
                (inner if in_function else top).add(_resolve(mod))
            walk(child, func)

    walk(tree, False)
    return top - {""}, inner - {""}


def _resolve(mod: str) -> str:
    """A module name, or its package's when it names a package (`bench` for `bench.__init__`)."""
    return mod.removesuffix(".__init__")


MODULES = {_name(p).removesuffix(".__init__"): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _known(mod: str) -> str:
    """The module an import names: `from . import registry` names `registry`; `from .x import y` names `x`."""
    return mod if mod in MODULES else mod.rsplit(".", 1)[0] if mod.rsplit(".", 1)[0] in MODULES else mod


def test_no_import_inside_a_function_dodges_a_cycle():
    found = [
        (name, _known(mod))
        for name, (_, inner) in GRAPH.items()
        for mod in inner
        if (name, _known(mod).split(".")[0]) not in LAZY_ALLOWED
    ]
    assert not found, f"package imports placed inside functions: {found}"


def lint_imports(root) -> subprocess.CompletedProcess:
    """`lint-imports` on the package at `root`, with the contracts in its pyproject.toml."""
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], capture_output=True, text=True, cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})  # fmt: skip


def test_the_declared_layer_rules_hold():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kept, 0 broken" in out.stdout, out.stdout


def _copy(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "helpers", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_an_upward_import_breaks_the_layer_rules(tmp_path):
    root = _copy(tmp_path)
    (root / "helpers" / "base" / "upward.py").write_text("from ..run.generate import generate  # noqa: F401\n")
    out = lint_imports(root)
    assert out.returncode == 1, out.stdout
    assert "Each wing imports only the wings below it BROKEN" in out.stdout
    assert "helpers.base.upward -> helpers.run.generate" in out.stdout


def test_a_module_outside_every_wing_breaks_the_layer_rules(tmp_path):
    root = _copy(tmp_path)
    (root / "helpers" / "stray.py").write_text('"""A module nobody placed in a wing."""\n')
    out = lint_imports(root)
    assert out.returncode == 1 and "helpers.stray" in out.stdout, out.stdout


def test_an_import_cycle_inside_a_wing_breaks_the_rules(tmp_path):
    root = _copy(tmp_path)
    errors = root / "helpers" / "base" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom . import images  # noqa: E402, F401\n")
    out = lint_imports(root)
    assert out.returncode == 1 and "No import cycle inside a wing BROKEN" in out.stdout, out.stdout


def test_nothing_is_patched_onto_diffusers_pipelines():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("zoo_"):
                pytest.fail(f"helpers/{name}: sets .{node.attr}; the pipeline's record lives in helpers.base.loaded")


def test_import_helpers_leaves_the_benchmark_harness_out():
    code = "import sys, helpers; print(sorted(m for m in sys.modules if m.startswith('helpers.bench')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"

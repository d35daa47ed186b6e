"""The house: imports go one way down the chain, no cycles, nothing patched onto diffusers pipelines.

python -m pytest tests/test_architecture.py      # prints nothing more when the house is in order
"""

import ast
import subprocess
import sys

import pytest

from .environment import ROOT

PACKAGE = ROOT / "helpers"
# What everything shares: they import only each other (and libraries), never a module above them.
GROUND = {
    "errors", "smoke", "devices", "images", "families", "loaded", "versions", "records", "masks", "timing", "quiet",
    "library_notices", "hub",
}  # fmt: skip
# The command line imports a command's modules when that command runs: `--help`, `list` and `show` load no torch,
# diffusers or transformers (tests/test_cli.py), and only `bench` loads the benchmark harness. At the top of the
# chain, these imports cannot hide a cycle.
LAZY_ALLOWED = {("__main__", m) for m in ("bench", "doctor", "evaluate", "generate", "hub", "ip_adapter",
                                          "offline_hub", "readme", "records", "sweepfile", "train", "trainexport",
                                          "upscale")}  # fmt: skip


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


def test_imports_form_no_cycle():
    edges = {name: {_known(m) for m in top} - {name, ""} for name, (top, _) in GRAPH.items()}
    state, cycle = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycle.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycle, f"import cycles: {cycle}"


@pytest.mark.parametrize("name", sorted(GROUND))
def test_the_ground_floor_imports_nothing_above_it(name):
    top, _ = GRAPH[name]
    above = {_known(m) for m in top} - GROUND
    assert not above, f"helpers/{name}.py imports {above}, which stand above the ground floor"


def test_nothing_is_patched_onto_diffusers_pipelines():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("zoo_"):
                pytest.fail(f"helpers/{name}: sets .{node.attr}; the pipeline's record lives in helpers.base.loaded")


def test_import_helpers_leaves_the_benchmark_harness_out():
    code = "import sys, helpers; print(sorted(m for m in sys.modules if m.startswith('helpers.bench')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"

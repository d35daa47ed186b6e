"""The README stays true: its model tables come from models.yaml, its test command is what CI runs."""

import re

from helpers import readme, registry
from helpers.zoo.registry import SECTIONS

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


def test_ci_installs_every_requirement_pinned_and_the_readme_says_the_same_torch():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    ci, text = (ROOT / ".ci" / "run").read_text(), (ROOT / "README.md").read_text()
    assert "-c constraints.txt" in ci
    for name in ("torch", "torchvision"):  # a matching pair, the same in CI, the README and the constraints
        assert f"{name}=={pins[name]}" in ci and f"{name}=={pins[name]}" in text
    wanted = []
    for path in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / path).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                wanted.append(re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ]", line)[0]).lower())
    assert [w for w in wanted if w not in pins] == [], "constraints.txt pins every requirement"


def test_stale_table_is_detected(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n{readme.BEGIN}\n| old |\n{readme.END}\n{readme.MEMORY_BEGIN}\n{readme.MEMORY_END}\n"
                     f"{readme.FACTS_BEGIN}\n{readme.FACTS_END}\n"
                     f"{readme.PLANS_BEGIN}\n{readme.PLANS_END}\n")  # fmt: skip
    assert not readme.update(stale, check=True)
    assert readme.update(stale) is False and readme.update(stale, check=True)


def test_plans_table_comes_from_the_planner():
    table = readme.plans_table()
    assert "| `flux-dev` | nf4 | nf4 | full |" in table and "| `sd15` | full | full | full |" in table


def test_memory_table_comes_from_the_policy_code():
    table = readme.memory_table()
    assert "| `flux-dev` | gpu (nf4) |" in table and "| `sd15` | gpu |" in table


def test_facts_table_counts_each_section_from_its_entries():
    reg = registry.default()
    rows = {line.split(" | ")[0].strip("| "): line for line in readme.facts_table().splitlines()[2:]}
    assert set(rows) == {s.replace("_", " ") for s in SECTIONS}
    adapters = reg.t2i_adapters
    cells = [int(c) for c in rows["t2i adapters"].strip("| ").split(" | ")[1:]]
    assert cells == [len(adapters), len(adapters), sum(s.revision_kind == "commit" for s in adapters.values()),
                     sum(bool(readme.UNVERIFIED.search(s.notes)) for s in adapters.values())]  # fmt: skip
    plain = [m for m in reg.models.values() if not m.base]
    assert rows["models"].startswith(f"| models | {len(plain)} | ")

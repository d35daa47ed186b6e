"""The shipped PartiPrompts suite: complete, licensed, drawn deterministically."""

import pytest

from helpers.base.errors import ZooError
from helpers.judge import prompts


def test_the_suite_is_shipped_whole_with_its_licence():
    assert len(prompts.parti_prompts()) == 1632 and len(prompts.parti_categories()) == 12
    folder = prompts.PARTI.parent
    assert "Apache License" in (folder / "LICENSE").read_text() and "Google" in (folder / "NOTICE").read_text()


def test_n_per_category_is_deterministic():
    two = prompts.parti_prompts(2, ["Animals", "Vehicles"], seed=3)
    assert [p["category"] for p in two] == ["Animals", "Animals", "Vehicles", "Vehicles"]
    assert two == prompts.parti_prompts(2, ["Animals", "Vehicles"], seed=3)
    assert two != prompts.parti_prompts(2, ["Animals", "Vehicles"], seed=4)
    assert all(p["challenge"] == "Basic" for p in prompts.parti_prompts(3, "People", challenge="Basic"))


def test_an_unknown_category_names_the_real_ones():
    with pytest.raises(ZooError, match="no category \\['Animal'\\].*'Animals'"):
        prompts.parti_prompts(1, ["Animal"])

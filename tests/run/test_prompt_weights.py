"""A1111 prompt syntax through compel, offline: weights as written, long prompts whole, plain ones unchanged."""

import warnings

import numpy as np
import pytest
import torch

import helpers
from helpers import generate, read_record, regenerate
from helpers.run import prompt_weights

from ..common import px, small

pytestmark = pytest.mark.usefixtures("fresh_hub")

LONG = ", ".join(["a photo of a red cat on the beach at sunset"] * 12)  # about 130 tokens


def test_a1111_attention_syntax():
    assert prompt_weights.parse("a (red:1.5) cat, [blurry]") == [
        ("a ", 1.0),
        ("red", 1.5),
        (" cat, ", 1.0),
        ("blurry", pytest.approx(1 / 1.1)),
    ]
    assert prompt_weights.parse("((a)) b") == [("a", pytest.approx(1.21)), (" b", 1.0)]
    assert prompt_weights.parse(r"\(a\) (b:0.5) BREAK c") == [("(a) ", 1.0), ("b", 0.5), ("BREAK", -1), ("c", 1.0)]
    assert prompt_weights.is_plain("a cat, photo: sharp") and not prompt_weights.is_plain("a (cat)")


def test_a_plain_prompt_is_left_to_the_pipeline_and_compel_agrees_with_it():
    pipe = helpers.get_pipeline("sd15", device="cpu")
    assert prompt_weights.embeddings(pipe, "sd1", "a cat", "a dog", True) == {}
    ours = prompt_weights._encode(prompt_weights._encoders(pipe, "sd1"), "a cat")[0]
    theirs = pipe.encode_prompt("a cat", "cpu", 1, False)[0]
    assert torch.equal(ours, theirs), "compel's unweighted embeddings are the pipeline's own"
    kw = small("sd15", seed=4)
    today = generate("sd15", "a cat", **kw).images[0]
    weight_one = generate("sd15", "(a cat:1)", **kw).images[0]
    assert np.array_equal(px(today), px(weight_one)), "weight 1 through compel gives today's pixels"


def test_a_weight_scales_its_tokens_away_from_the_empty_prompt():
    pipe = helpers.get_pipeline("sd15", device="cpu")
    enc = prompt_weights._encoders(pipe, "sd1")
    plain, weighted = prompt_weights._encode(enc, "a cat")[0], prompt_weights._encode(enc, "a (cat:1.5)")[0]
    empty = enc[0].conditioning_provider.empty_z
    ids = pipe.tokenizer("a cat").input_ids
    cat = ids.index(pipe.tokenizer("cat", add_special_tokens=False).input_ids[0])
    expected = empty[:, cat] + 1.5 * (plain[:, cat] - empty[:, cat])
    assert torch.allclose(weighted[:, cat], expected, atol=1e-6), "compel: empty + weight x (token - empty)"
    others = [i for i in range(plain.shape[1]) if i != cat]
    assert torch.equal(weighted[:, others], plain[:, others]), "the other tokens are untouched"
    kw = small("sd15", seed=4)
    assert not np.array_equal(
        px(generate("sd15", "a (cat:1.5)", **kw).images[0]), px(generate("sd15", "a cat", **kw).images[0])
    )


@pytest.mark.parametrize("key", ["sd15", "sdxl-base"])
def test_long_weighted_prompts_are_read_whole_and_regenerate(key, tmp_path):
    pipe = helpers.get_pipeline(key, device="cpu")
    embeds = prompt_weights.embeddings(pipe, pipe_family := helpers.get(key).family, LONG, "(blurry:1.3)", True)
    assert (
        embeds["prompt_embeds"].shape[1] > 77
        and embeds["negative_prompt_embeds"].shape == embeds["prompt_embeds"].shape
    )
    if pipe_family == "sdxl":
        assert embeds["pooled_prompt_embeds"].shape[0] == 1
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*Dropped.*")
        result = generate(key, LONG + ", (golden hour:1.2)", negative_prompt="(blurry:1.3)", **small(key, seed=2))
    assert result.records[0].prompt == LONG + ", (golden hour:1.2)", "the raw prompt goes in the recipe"
    path = result.save(tmp_path)[0]
    assert read_record(path).prompt.endswith("(golden hour:1.2)")
    assert np.array_equal(px(regenerate(path).images[0]), px(result.images[0]))
    chunked = generate(key, "a cat BREAK a dog", **small(key, seed=2)).images[0]
    assert not np.array_equal(px(chunked), px(generate(key, "a cat a dog", **small(key, seed=2)).images[0]))


@pytest.mark.parametrize("prompt, said", [
    ("((((a cat", "4 '(' never closed (each weights the rest x1.1). Read as: 'a cat' x1.46"),
    ("(cat:abc)", "is no weight: kept as text, the brackets weight x1.1. Read as: 'cat:abc' x1.1"),
    ("a cat) and [dog", "1 '[' never closed (each weights the rest /1.1); 1 ')' without an opening bracket"),
])  # fmt: skip
def test_bracket_mistakes_are_read_as_a1111_reads_them_and_said(prompt, said):
    assert said in prompt_weights.mistakes(prompt)
    assert prompt_weights.mistakes("a (red:1.5) cat, [blurry], \\(literal\\)") is None


def test_what_was_read_is_said_once_per_generation(tmp_path):
    from ..test_cli import run as run_cli

    code, out, err = run_cli("generate", "sd15", "((((a cat", "--steps", "2", "--size", "64", "--hires", "2",
                             "--hires-steps", "1", "--out", str(tmp_path), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    said = [line for line in err.splitlines() if "brackets were read as A1111 reads them" in line]
    assert len(said) == 1 and "Read as: 'a cat' x1.46" in said[0], err

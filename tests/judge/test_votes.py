"""Blind A/B votes: the pairs, the log that survives a restart, the Bradley–Terry ranking, the panel."""

import json
import math
import random

import pytest
from PIL import Image

from helpers.base.records import Record, read_record, save_image
from helpers.judge.votes import (
    append_vote,
    bradley_terry,
    comparisons,
    make_pairs,
    pairs_from_folder,
    rank,
    read_votes,
    remaining,
    simulate_votes,
    votes_to_separate,
)
from helpers.panels.ab import ABPanel

PLANTED = {"a": 1.0, "b": 0.0, "c": -1.0, "d": -2.0}


def simulate(n: int, strengths=PLANTED, seed: int = 0) -> list[dict]:
    """Votes of a simulated rater who prefers model i over j with the Bradley–Terry probability."""
    rng = random.Random(seed)
    models, votes = list(strengths), []
    for k in range(n):
        left, right = rng.sample(models, 2)
        p_left = 1 / (1 + math.exp(strengths[right] - strengths[left]))
        votes.append(
            {"pair": f"p{k}", "left": left, "right": right, "vote": "left" if rng.random() < p_left else "right"}
        )
    return votes


def colour(model_index: int, prompt_index: int) -> tuple[int, int, int]:
    return (40 + 80 * model_index, 200 - 60 * model_index, 60 + 100 * prompt_index)


def folder_of_images(folder, models=("sd15", "sdxl-turbo", "flux-schnell"), prompts=("a fox", "a castle"), seed=3):
    """PNGs with recipes, as `generate` saves them: every model on every prompt, one seed, each its own colour."""
    for i, model in enumerate(models):
        for j, prompt in enumerate(prompts):
            record = Record(prompt=prompt, seed=seed, num_inference_steps=2, guidance_scale=1.0,
                            scheduler="Euler", width=64, height=64, model=model)  # fmt: skip
            save_image(Image.new("RGB", (64, 64), colour(i, j)), record, folder)
    return folder


def test_bradley_terry_recovers_a_planted_ranking():
    ranking = rank(simulate(600), n_boot=200)
    table = ranking.table
    assert list(table.index) == ["a", "b", "c", "d"]
    for model, true in PLANTED.items():  # the planted strengths, centred like the fit's
        centred = true - sum(PLANTED.values()) / len(PLANTED)
        assert table.at[model, "low"] <= centred <= table.at[model, "high"], (model, table)
    assert ranking.separated and ranking.verdict.startswith("separated: a > b > c > d")
    few = rank(simulate(40), n_boot=200)
    assert not few.separated and few.verdict.startswith("keep voting")
    assert (few.table["high"] - few.table["low"]).min() > (table["high"] - table["low"]).max(), "more votes, narrower"


def test_ties_count_half_a_win_and_both_bad_is_left_out():
    votes = [{"pair": "1", "left": "a", "right": "b", "vote": "left"},
             {"pair": "2", "left": "b", "right": "a", "vote": "tie"},
             {"pair": "3", "left": "a", "right": "b", "vote": "both_bad"}]  # fmt: skip
    assert sorted(comparisons(votes)) == [("a", "b"), ("a", "b"), ("a", "b"), ("b", "a")]
    # 1.5 wins to 0.5 in all: a beats b with probability 3/4, so the strengths differ by log 3 (up to regularisation).
    fit = bradley_terry(comparisons(votes * 50), ["a", "b"])
    assert fit["a"] - fit["b"] == pytest.approx(math.log(3), rel=0.02)
    table = rank(votes, n_boot=20).table
    assert table.loc["a", ["wins", "losses", "ties", "both_bad", "votes"]].tolist() == [1, 0, 1, 1, 3]
    assert table.loc["b", ["wins", "losses", "ties", "both_bad", "votes"]].tolist() == [0, 1, 1, 1, 3]
    only_bad = rank([votes[2]], n_boot=20)
    assert not only_bad.separated and math.isnan(only_bad.table.at["a", "strength"])


def test_pairs_are_blind_random_and_reproducible(tmp_path):
    pairs = pairs_from_folder(folder_of_images(tmp_path), seed=1)
    assert len(pairs) == 6, "3 models, 2 prompts: 3 pairs per prompt"
    for p in pairs:
        assert p.left != p.right and read_record(p.left_image).model == p.left
        assert read_record(p.right_image).prompt == p.prompt and read_record(p.right_image).seed == p.seed == 3
    assert pairs == pairs_from_folder(tmp_path, seed=1), "the same seed, the same order and sides"
    many = make_pairs([(m, "a fox", s, tmp_path / f"{m}{s}.png") for m in "abc" for s in range(40)], seed=7)
    sides = [p.left < p.right for p in many]
    assert 0.3 < sum(sides) / len(sides) < 0.7, "the alphabetically first model is on either side"
    other = pairs_from_folder(tmp_path, seed=2)
    assert {p.id for p in other} == {p.id for p in pairs} and other != pairs, "another seed: same pairs, new order"


def test_the_log_survives_a_restart_and_a_torn_line(tmp_path):
    log = tmp_path / "votes.jsonl"
    pairs = pairs_from_folder(folder_of_images(tmp_path / "images"))
    for pair, vote in zip(pairs[:3], ["left", "tie", "both_bad"], strict=True):
        append_vote(log, pair, vote)
    # A "restart": nothing in memory, only the file.
    votes = read_votes(log)
    assert [v["vote"] for v in votes] == ["left", "tie", "both_bad"]
    first = {"pair": pairs[0].id, "left": pairs[0].left, "right": pairs[0].right, "prompt": pairs[0].prompt, "seed": 3}
    assert votes[0] == first | {"vote": "left", "time": votes[0]["time"]} and votes[0]["time"].startswith("20")
    assert remaining(pairs, votes) == pairs[3:]
    with open(log, "a") as f:
        f.write('{"pair": "' + pairs[3].id + '", "le')  # the kernel died in the middle of a write
    with pytest.warns(UserWarning, match="1 unreadable line"):
        assert len(read_votes(log)) == 3
    append_vote(log, pairs[3], "right")  # starts on a line of its own
    with pytest.warns(UserWarning, match=r"unreadable line\(s\) \(4\)"):
        votes = read_votes(log)
    assert [v["pair"] for v in votes] == [p.id for p in pairs[:4]] and remaining(pairs, votes) == pairs[4:]
    with pytest.raises(Exception, match="not one of"):
        append_vote(log, pairs[4], "maybe")


def test_panel_buttons_and_keys_write_each_vote_then_resume(tmp_path):
    log = tmp_path / "votes.jsonl"
    pairs = pairs_from_folder(folder_of_images(tmp_path / "images"))
    panel = ABPanel(pairs, log, min_look_s=0, n_boot=20)
    assert panel.progress.value.startswith("<b>0 of 6 pairs</b>") and panel.current.prompt in panel.prompt.value
    assert panel.left.value[:4] == b"\x89PNG" and b"sdzoo" not in panel.left.value, "no recipe, no name in the image"
    assert all(p.left not in panel.progress.value + panel.prompt.value for p in pairs), "names hidden"
    first = panel.current
    panel.buttons["left"].click()
    assert json.loads(log.read_text().splitlines()[-1])["vote"] == "left"
    assert read_votes(log)[0]["left"] == first.left and panel.current == pairs[1]
    panel.press("ArrowRight", 1234.5)
    panel.press("ArrowRight", 1234.5)  # the same key event delivered twice is one vote, not a vote on pair 3
    panel.press("q")  # not a voting key
    panel.buttons["tie"].click()
    assert [v["vote"] for v in read_votes(log)] == ["left", "right", "tie"]
    assert panel.progress.value.startswith("<b>3 of 6 pairs</b>") and "keep voting" in panel.ranking.value
    assert first.left not in panel.status.value
    panel.reveal.value = True
    panel.press("x")
    assert pairs[3].left in panel.status.value and "both bad" in panel.status.value
    # A restart: a new panel on the same file shows the fourth pair it has not seen and asks nothing twice.
    again = ABPanel(pairs_from_folder(tmp_path / "images"), log, min_look_s=0, n_boot=20)
    assert again.current == pairs[4] and again.progress.value.startswith("<b>4 of 6 pairs</b>")
    again.press("1")
    again.press("2")
    assert again.current is None and all(b.disabled for b in again.buttons.values())
    again.press("1")
    ids = [v["pair"] for v in read_votes(log)]
    assert ids == [p.id for p in pairs] and len(set(ids)) == 6, "every pair once, in order"


def test_a_vote_sooner_than_a_look_is_ignored(tmp_path):
    log = tmp_path / "votes.jsonl"
    panel = ABPanel(pairs_from_folder(folder_of_images(tmp_path / "images")), log, min_look_s=30)
    panel.buttons["left"].click()  # a double click's second half, on a pair nobody has seen yet
    assert not log.exists() and "too fast" in panel.status.value


def test_pairs_from_a_real_comparison(offline_hub_dir, tmp_path):
    from helpers.judge.votes import pairs_from_compare
    from helpers.sweeps.compare import compare

    result = compare(["sd15", "sdxl-turbo"], ["a fox"], seeds=[1, 2], out_dir=tmp_path, device="cpu",
                     height=64, width=64, num_inference_steps=1)  # fmt: skip
    pairs = pairs_from_compare(result, seed=0)
    assert sorted((p.seed, {p.left, p.right} == {"sd15", "sdxl-turbo"}) for p in pairs) == [(1, True), (2, True)]
    for p in pairs:
        assert (read_record(p.left_image).model, read_record(p.right_image).model) == (p.left, p.right)
        assert read_record(p.left_image).seed == p.seed and read_record(p.left_image).prompt == "a fox"


def test_simulated_votes_are_marked_and_follow_the_planted_strengths(tmp_path):
    pairs = pairs_from_folder(folder_of_images(tmp_path))
    votes = simulate_votes(pairs, {"sd15": 1.0, "sdxl-turbo": 0.0, "flux-schnell": -1.0}, n=300)
    assert len(votes) == 300 and all(v["simulated"] for v in votes)
    assert {v["pair"] for v in votes} == {p.id for p in pairs}
    ranking = rank(votes, n_boot=100)
    assert list(ranking.table.index) == ["sd15", "sdxl-turbo", "flux-schnell"]
    assert ranking.verdict.startswith("SIMULATED (300 of 300 votes"), "a simulation says so"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closer_models_need_more_votes_to_separate(tmp_path, seed):
    pairs = pairs_from_folder(folder_of_images(tmp_path, models=("sd15", "sdxl-turbo")))
    needed = {gap: votes_to_separate(pairs, {"sd15": gap, "sdxl-turbo": 0.0}, seed=seed) for gap in (1.0, 0.3)}
    assert needed[1.0] is not None and (needed[0.3] is None or needed[0.3] > needed[1.0]), needed
    assert votes_to_separate(pairs, {"sd15": 0.0, "sdxl-turbo": 0.0}, counts=(50, 200), seed=seed) is None, (
        "equal models never separate"
    )

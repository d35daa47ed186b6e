"""Community fine-tunes: their registry facts, their card settings as generation defaults, and they generate offline."""

import copy

import numpy as np
import pytest
import yaml

from helpers import generate, read_record, regenerate, registry
from helpers.base.errors import RegistryError
from helpers.offline import hub as offline_hub
from helpers.run.request import settle
from helpers.zoo.registry import REGISTRY_PATH, parse

from ..common import SMALL, px

pytestmark = pytest.mark.usefixtures("fresh_hub")

REG = registry.default()
FINETUNES = ["juggernaut-xl-v9", "realvisxl-v5", "pony-diffusion-v6-xl", "illustrious-xl-v0.1", "noobai-xl-1.0"]
FOLDERS = [k for k in FINETUNES if offline_hub.buildable(REG.get(k))]


def test_finetunes_follow_animagine_and_state_licence_and_sources():
    keys = list(REG.models)
    start = keys.index("animagine-xl-3.1") + 1
    assert keys[start : start + len(FINETUNES)] == FINETUNES
    for key in FINETUNES:
        m = REG.get(key)
        assert m.family == "sdxl" and m.license and m.sources and "community" in m.tags
        assert all(s.startswith("https://") for s in m.sources)
    assert REG.get("noobai-xl-1.0").commercial_use is False, "its licence adds a commercial prohibition"
    assert REG.get("pony-diffusion-v6-xl").commercial_use is False
    assert REG.get("realvisxl-v5").commercial_use is True and REG.get("realvisxl-v5").license == "openrail++"
    assert FOLDERS == FINETUNES  # Pony too: the offline hub writes its single file in the original SGM layout


def test_pony_is_a_single_file_with_its_card_settings():
    pony = REG.get("pony-diffusion-v6-xl")
    assert pony.single_file == "ponyDiffusionV6XL_v6StartWithThisOne.safetensors"
    d = pony.defaults
    assert (d.clip_skip, d.scheduler, d.steps) == (2, "Euler a", 25)
    request = settle(pony, "text2img", "a pony in a meadow", seed=1)
    assert request.clip_skip == 2
    assert request.prompt == "score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, a pony in a meadow"
    assert settle(pony, "text2img", "a pony", clip_skip=1, prompt_prefix="").prompt == "a pony"
    tagged = "score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, source_pony, a pony"
    assert settle(pony, "text2img", tagged).prompt == tagged, "tags the user wrote are not doubled"


@pytest.mark.parametrize("key", FOLDERS)
def test_diffusers_folder_finetunes_generate_offline(key):
    spec = REG.get(key)
    result = generate(key, "a lighthouse at dusk", seed=3, **SMALL)
    image, rec = px(result.images[0]), result.records[0]
    assert image.shape == (64, 64, 3) and image.std() > 0
    assert (rec.repo, rec.revision, rec.scheduler) == (spec.repo, spec.revision, spec.defaults.scheduler)
    assert rec.guidance_scale == spec.defaults.guidance_scale


def test_quality_tags_prefix_the_prompt_and_regenerate_without_doubling(tmp_path):
    prefix = REG.get("noobai-xl-1.0").defaults.prompt_prefix
    tagged = generate("noobai-xl-1.0", "1girl, solo, night sky", seed=5, **SMALL)
    plain = generate("noobai-xl-1.0", "1girl, solo, night sky", seed=5, prompt_prefix="", **SMALL)
    assert tagged.records[0].prompt == f"{prefix}, 1girl, solo, night sky"
    assert plain.records[0].prompt == "1girl, solo, night sky"
    assert not np.array_equal(px(tagged.images[0]), px(plain.images[0])), "the tags reach the text encoders"
    path = tagged.save(tmp_path)[0]
    assert read_record(path).a1111().startswith(f"{prefix}, 1girl")
    again = regenerate(path)
    assert again.records[0].prompt == tagged.records[0].prompt
    assert np.array_equal(px(again.images[0]), px(tagged.images[0]))


def test_an_entrys_clip_skip_is_the_default_and_the_caller_overrides_it():
    raw = yaml.safe_load(REGISTRY_PATH.read_text())
    raw["models"]["sd15"]["defaults"]["clip_skip"] = 2
    reg = parse(copy.deepcopy(raw))  # parse fills inherited fields into the mapping it is given
    by_default = generate("sd15", "a watercolor fox", seed=2, registry=reg, **SMALL)
    explicit = generate("sd15", "a watercolor fox", seed=2, clip_skip=2, **SMALL)
    overridden = generate("sd15", "a watercolor fox", seed=2, clip_skip=1, registry=reg, **SMALL)
    assert by_default.records[0].clip_skip == 2 and overridden.records[0].clip_skip == 1
    assert np.array_equal(px(by_default.images[0]), px(explicit.images[0]))
    assert not np.array_equal(px(by_default.images[0]), px(overridden.images[0]))
    raw["models"]["sd15"]["defaults"]["clip_skip"] = 0
    with pytest.raises(RegistryError, match=r"models\.sd15\.defaults\.clip_skip"):
        parse(raw)

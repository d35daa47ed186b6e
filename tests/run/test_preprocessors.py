"""controlnet_aux's preprocessors on the offline hub: each detector reads its random stand-in at the real file name
and format in lllyasviel/Annotators and gives a map of the picture's size; `control=[(key, picture)]` makes it."""

import numpy as np
import pytest
from PIL import Image

from helpers import ZooError, generate, regenerate
from helpers.base.errors import RegistryError
from helpers.base.images import fingerprint
from helpers.offline import tiny
from helpers.run.control import AUX_KINDS, preprocess
from helpers.zoo import registry as registry_mod
from helpers.zoo.registry import default

from ..common import px, small

pytestmark = pytest.mark.usefixtures("fresh_hub")

REG = default()
# Openpose, lineart_anime and NormalBae are too large for the offline hub (their architectures are fixed).
STAND_INS = [k for k, entry in AUX_KINDS.items() if entry is None or all(
    tiny.annotator_weights(f) is not None for f in REG.preprocessor(entry).files)]  # fmt: skip


def _picture(w: int = 64, h: int = 48) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([40 + 150 * x / w, 60 + 120 * y / h, 200 - 100 * (x + y) / (w + h)], axis=-1)
    rgb[h // 3 : h // 2, w // 4 : w // 2] = 250  # a bright box: edges and lines to find
    return Image.fromarray(rgb.round().astype(np.uint8))


def test_every_kind_the_issue_names_has_a_preprocessor_and_a_controlnet():
    assert {"openpose", "lineart", "lineart_anime", "softedge", "softedge_pidinet", "mlsd", "normal", "shuffle"} <= set(
        AUX_KINDS
    )
    kinds = {cn.kind for cn in REG.controlnets.values()}
    assert {"openpose", "lineart", "lineart_anime", "softedge", "mlsd", "normal", "shuffle"} <= kinds
    for key in {e for e in AUX_KINDS.values() if e}:
        spec = REG.preprocessor(key)
        assert spec.repo == "lllyasviel/Annotators" and spec.files and spec.weights == "pth" and spec.sources


def test_the_stand_ins_cover_the_small_detectors():
    assert {"lineart", "softedge", "softedge_pidinet", "mlsd", "shuffle"} <= set(STAND_INS)


@pytest.mark.parametrize("kind", STAND_INS)
def test_each_preprocessor_gives_a_map_of_the_pictures_size(kind):
    picture = _picture()
    out = preprocess(picture, kind)
    assert out.size == picture.size and out.mode == "RGB"
    assert np.array_equal(px(out), px(preprocess(picture, kind))), "the same picture gives the same map"
    assert not np.array_equal(px(out), px(picture)), "a map, not the picture passed through"


def test_detector_files_are_pickles_the_entry_opts_into():
    raw = {"name": "HED", "repo": "lllyasviel/Annotators", "class": "HEDdetector", "kind": "softedge",
           "files": ["ControlNetHED.pth"], "license": "other", "description": "x", "size": {"download_gb": 0.03}}
    with pytest.raises(RegistryError, match=r"preprocessors\.hed.*weights: pth"):
        registry_mod.parse({"models": {}, "preprocessors": {"hed": raw}})
    assert registry_mod.parse({"models": {}, "preprocessors": {"hed": raw | {"weights": "pth"}}}).preprocessors


def test_control_with_a_picture_makes_the_map_with_the_controlnets_preprocessor(tmp_path):
    kw = small("sd15", seed=3, num_inference_steps=2, height=64, width=64)
    picture = _picture(64, 64)
    made = generate("sd15", "a house", control=[("lineart-sd15", picture)], **kw)
    given = generate("sd15", "a house", control={"lineart-sd15": preprocess(picture, "lineart")}, **kw)
    assert np.array_equal(px(made.images[0]), px(given.images[0])), "the lineart map, made by the lineart detector"
    rec = made.records[0]
    assert rec.controls[0]["image"] == fingerprint(preprocess(picture, "lineart")) != fingerprint(picture), "the map"
    assert rec.controls[0]["preprocessor"] == "lineart" and "Module: lineart, Model: lineart-sd15" in rec.a1111()
    path = made.save(tmp_path)[0]
    again = regenerate(path, control_images=[picture]).images[0]  # the picture: its map is made again
    assert np.array_equal(px(again), px(made.images[0]))
    with pytest.raises(ZooError, match="or the picture its lineart map was made from"):
        regenerate(path, control_images=[_picture(64, 64).rotate(90)])
    with pytest.raises(ZooError, match="no preprocessor here"):
        generate("sdxl-base", "a house", control=[("union-sdxl", picture)], **small("sdxl-base"))

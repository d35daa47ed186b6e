"""The offline hub has the Hugging Face cache layout and each entry's real file names."""

import json
import os

import pytest
from huggingface_hub import get_cached_repo_tree, scan_cache_dir

from helpers import registry
from helpers.offline import hub as offline_hub

from ..common import REAL_CONFIGS

REG = registry.default()


def _snapshot(hub, spec):
    storage = hub / ("models--" + spec.repo.replace("/", "--"))
    commit = (storage / "refs" / "main").read_text()
    if spec.revision_kind == "commit":
        assert commit == spec.revision
    else:
        assert (storage / "refs" / spec.revision).read_text() == commit
    return storage / "snapshots" / commit


def test_cache_is_what_huggingface_hub_sees(offline_hub_dir):
    info = scan_cache_dir(offline_hub_dir)
    repos = {r.repo_id for r in info.repos}
    assert {m.repo for m in REG.models.values() if offline_hub.buildable(m)} <= repos
    for m in REG.models.values():  # single-file entries: not written until the hub writes original key layouts
        assert offline_hub.buildable(m) or m.repo not in repos
    assert {v.repo for v in REG.vaes.values()} | {a.repo for a in REG.adapters.values()} <= repos
    assert not info.warnings


@pytest.mark.parametrize("key", [k for k, m in REG.models.items() if m.single_file and offline_hub.buildable(m)])
def test_single_file_repo_holds_its_checkpoint(offline_hub_dir, key):
    spec = REG.get(key)
    files = {f.path for f in get_cached_repo_tree(spec.repo, revision=spec.revision, cache_dir=offline_hub_dir)}
    assert spec.single_file in files and not any(f.endswith("model_index.json") for f in files)


@pytest.mark.parametrize(
    "key", [k for k, m in REG.models.items() if not m.base and not m.single_file and offline_hub.buildable(m)]
)
def test_repo_layout_matches_entry(offline_hub_dir, key):
    spec = REG.get(key)
    snap = _snapshot(offline_hub_dir, spec)
    index = json.loads((snap / "model_index.json").read_text())
    assert index["_class_name"] == spec.pipeline
    files = {f.path for f in get_cached_repo_tree(spec.repo, revision=spec.revision, cache_dir=offline_hub_dir)}
    assert files == {p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()}
    weights = [f for f in files if f.endswith((".safetensors", ".bin"))]
    if spec.weights == "bin":
        assert weights and all(f.endswith(".bin") for f in weights)
    else:
        assert weights and all(f.endswith(".safetensors") for f in weights)
    variant_files = [f for f in weights if f".{spec.variant}." in f or f".{spec.variant}-" in f]
    assert bool(variant_files) == bool(spec.variant), "variant files exactly where the entry says"
    for missing in spec.layout.missing:
        assert index[missing] == [None, None] and not any(f.startswith(missing + "/") for f in files)
    assert ("safety_checker/config.json" in files) == spec.layout.safety_checker
    for component, shards in spec.layout.sharded.items():
        n = len([f for f in files if f.startswith(component + "/") and "-of-" in f and spec.variant is None])
        assert n in (0, shards) and (n == shards or spec.variant)


def test_files_are_blobs_named_by_hash(offline_hub_dir):
    spec = REG.get("sd15")
    snap = _snapshot(offline_hub_dir, spec)
    unet = snap / "unet" / "diffusion_pytorch_model.fp16.safetensors"
    assert unet.is_symlink() or os.name == "nt"
    blob = unet.resolve()
    assert blob.parent.name == "blobs" and len(blob.name) == 64  # LFS files are stored under their sha256


def test_build_is_reproducible(tmp_path):
    a = offline_hub.build(tmp_path / "a", keys=["sd15"])
    b = offline_hub.build(tmp_path / "b", keys=["sd15"])
    blobs = lambda root: sorted(p.name for p in root.rglob("blobs/*"))  # noqa: E731
    assert blobs(a) == blobs(b) and blobs(a)


# The real layouts of SD 1.5, SDXL and FLUX.1-schnell (configs only), when the shared folder is beside the checkout.
REAL_REPOS = {"sd15": "sd15", "sdxl-base": "sdxl", "flux-schnell": "flux"}
STRUCTURE = (
    "_class_name",
    "architectures",
    "down_block_types",
    "up_block_types",
    "in_channels",
    "out_channels",
    "latent_channels",
    "addition_embed_type",
    "scaling_factor",
    "shift_factor",
    "use_quant_conv",
    "use_post_quant_conv",
    "guidance_embeds",
    "patch_size",
    "hidden_act",
    "model_type",
    "prediction_type",
    "beta_schedule",
    "timestep_spacing",
    "model_max_length",
)


@pytest.mark.skipif(not REAL_CONFIGS.is_dir(), reason="../shared/real-configs is not beside this checkout")
@pytest.mark.parametrize("key", list(REAL_REPOS))
def test_tiny_repos_have_the_real_structure(offline_hub_dir, key):
    """Same components and classes, same files, same block types and channels as the real checkpoint."""
    real, tiny = REAL_CONFIGS / REAL_REPOS[key], _snapshot(offline_hub_dir, REG.get(key))
    real_index = json.loads((real / "model_index.json").read_text())
    tiny_index = json.loads((tiny / "model_index.json").read_text())
    components = {k: v for k, v in real_index.items() if isinstance(v, list) and v[0]}
    assert components == {k: v for k, v in tiny_index.items() if isinstance(v, list) and v[0]}
    for name in components:
        real_files = {p.name for p in (real / name).iterdir()}
        tiny_files = {p.name for p in (tiny / name).iterdir()}
        assert real_files <= tiny_files, f"{name}: the real repo has {real_files - tiny_files}"
        for config_name in real_files & tiny_files:
            if not config_name.endswith("config.json"):
                continue
            want = json.loads((real / name / config_name).read_text())
            got = json.loads((tiny / name / config_name).read_text())
            for field in STRUCTURE:
                if field in want:
                    assert got.get(field) == want[field], f"{name}/{config_name}: {field}"
            for field in ("block_out_channels",):
                if field in want:
                    assert len(got[field]) == len(want[field]), f"{name}/{config_name}: number of blocks"

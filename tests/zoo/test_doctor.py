"""`python -m helpers doctor` against a fake Hub on localhost that serves the registry's repos."""

import os
import subprocess
import sys

import pytest
import yaml
from huggingface_hub import get_cached_repo_tree
from huggingface_hub.errors import CachedRepoTreeNotFoundError

from helpers import registry
from helpers.zoo.registry import REGISTRY_PATH

from ..environment import ROOT
from ..fake_hub import HubState, serve

REG = registry.default()


def _hub_state(offline_hub_dir):
    files, shas, gated = {}, {}, set()
    specs = [s for section in registry.SECTIONS for s in getattr(REG, section).values() if getattr(s, "repo", None)]
    processors = {(s.processor, s.processor_revision) for s in REG.evaluators.values() if s.processor}
    for repo, revision in [(s.repo, s.revision) for s in specs] + sorted(processors):
        try:
            tree = get_cached_repo_tree(repo, revision=revision, cache_dir=offline_hub_dir)
        except CachedRepoTreeNotFoundError:
            continue  # no stand-in (a family without a plain model): the fake Hub says "not found"
        files[repo] = sorted(set(files.get(repo, [])) | {f.path for f in tree})
        shas[repo] = f"{abs(hash(repo)) % 16**40:040x}"
    gated = {s.repo for s in specs if getattr(s, "gated", False)}
    sdxl = REG.get("sdxl-base").repo
    files[sdxl] = [f for f in files[sdxl] if not f.startswith("unet/") or ".fp16." not in f]  # fp16 unet gone
    canny = REG.controlnet("canny-sd15").repo  # its safetensors withdrawn: only the pickled file is left
    files[canny] = [f.replace(".safetensors", ".bin") for f in files[canny]]
    ip = REG.ip_adapter("ip-adapter-sdxl")  # the SDXL image encoder moved away
    files[ip.repo] = [f for f in files[ip.repo] if not f.startswith(ip.image_encoder + "/")]
    gated.discard(REG.get("flux-schnell").repo)  # the gate was lifted
    ssd = REG.get("ssd-1b")
    return HubState(
        gated=gated,
        deleted={REG.get("openjourney").repo},
        revisions={ssd.repo: {"main"}},  # the pinned commit was rewritten away
        files=files,
        shas=shas,
    )


@pytest.fixture(scope="module")
def doctor_run(offline_hub_dir, tmp_path_factory):
    state = _hub_state(offline_hub_dir)
    server, url = serve(state)
    tmp = tmp_path_factory.mktemp("doctor")
    reg_file = tmp / "models.yaml"
    fid = REG.evaluator("fid-inception").url  # on the fake Hub's host, where no file is: the release asset is gone
    reg_file.write_text(REGISTRY_PATH.read_text().replace(fid, f"{url}/releases/{fid.rsplit('/', 1)[1]}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=url, HF_HUB_OFFLINE="0", HF_HUB_CACHE=str(tmp / "cache"), HF_TOKEN_PATH=str(tmp / "t"))
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "doctor", "--pin", "--registry", str(reg_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    server.shutdown()
    return proc, reg_file, state


def _lines(out, key):
    return [line for line in out.splitlines() if f".{key} " in line or line.startswith("         -")]


def test_doctor_reports_each_problem(doctor_run):
    proc, _, _ = doctor_run
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = proc.stdout
    assert "PROBLEM  models.openjourney" in out and "repo not found" in out
    assert "PROBLEM  models.flux-schnell" in out and "the Hub says gated=False, the entry says gated=True" in out
    assert "PROBLEM  models.sdxl-base" in out and "unet/ has no 'fp16' variant file" in out
    assert "PROBLEM  models.ssd-1b" in out and "not found" in out
    assert "ok       models.sd15" in out and "ok       adapters.lcm-lora-sdxl" in out
    for entry in ("vaes.taesd", "controlnets.tile-sd15", "t2i_adapters.t2i-canny-sd15", "ip_adapters.ip-adapter-sd15",
                  "upscalers.sd-x4-upscaler", "preprocessors.depth-anything-v2-small", "evaluators.pickscore",
                  "evaluators.dinov2-base"):
        assert f"ok       {entry} " in out, f"doctor did not check {entry}"  # fmt: skip
    assert "PROBLEM  controlnets.canny-sd15" in out and "only pickled .bin weights; the entry says safetensors" in out
    assert "PROBLEM  ip_adapters.ip-adapter-sdxl" in out and "no image encoder 'sdxl_models/image_encoder/config" in out
    assert "PROBLEM  evaluators.fid-inception" in out and "the URL answers HTTP 404" in out
    checked = {line.split()[1].split(".")[0] for line in out.splitlines() if line.startswith(("ok ", "PROBLEM "))}
    assert checked == set(registry.SECTIONS), f"sections not checked: {set(registry.SECTIONS) - checked}"


def test_pin_writes_commits_and_keeps_the_file(doctor_run):
    proc, reg_file, state = doctor_run
    text = reg_file.read_text()
    assert text.startswith(REGISTRY_PATH.read_text().splitlines()[0])  # comments kept
    pinned = registry.load(reg_file)
    sd15 = pinned.get("sd15")
    assert (sd15.revision, sd15.revision_kind) == (state.shas[sd15.repo], "commit")
    assert pinned.vae("taesd").revision == state.shas[REG.vae("taesd").repo]
    assert pinned.get("flux-schnell").revision == REG.get("flux-schnell").revision, "problem entries stay as they were"
    assert pinned.get("sdxl-turbo").revision == REG.get("sdxl-turbo").revision, "pinned entries stay pinned"
    raw = yaml.safe_load(text)
    assert raw["models"]["sd15-lcm-lora"].get("revision") is None, "derived entries inherit their base's pin"


def test_offline_doctor_says_so_once_and_checks_the_cache():
    proc = subprocess.run([sys.executable, "-m", "helpers", "doctor"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip (the test environment is offline, on the offline hub)
    out = proc.stdout
    assert proc.returncode == 1 and "could not check" not in out, out
    assert out.count("Hugging Face Hub is offline (HF_HUB_OFFLINE=1)") == 1 and "local cache" in out
    lines = [line for line in out.splitlines() if line.startswith(("cached ", "missing "))]
    sections = {line.split()[1].split(".")[0] for line in lines}
    assert sections == set(registry.SECTIONS), f"sections not checked: {set(registry.SECTIONS) - sections}"
    assert "cached   evaluators.fid-inception " in out, "the torch.hub file is looked for where torch.hub keeps it"
    assert "cached   models.sd15 " in out and "cached   controlnets.canny-sd15 " in out, out
    cached = sum(line.startswith("cached") for line in lines)
    assert f"{cached} of {len(lines)} entries in the cache" in out

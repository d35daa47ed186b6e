"""`python -m helpers doctor` against a fake Hub on localhost that serves the registry's repos."""

import os
import subprocess
import sys

import pytest
import yaml
from huggingface_hub import get_cached_repo_tree

from helpers import registry
from helpers.zoo.registry import REGISTRY_PATH

from ..environment import ROOT
from ..fake_hub import HubState, serve

REG = registry.default()


def _hub_state(offline_hub_dir):
    files, shas, gated = {}, {}, set()
    for section in (REG.models, REG.vaes, REG.adapters):  # the other sections' repos are unknown: "not found"
        for spec in section.values():
            if getattr(spec, "single_file", None):  # not in the offline hub yet: the Hub serves just the file
                files[spec.repo] = [spec.single_file]
            else:
                tree = get_cached_repo_tree(spec.repo, revision=spec.revision, cache_dir=offline_hub_dir)
                files[spec.repo] = [f.path for f in tree]
            shas[spec.repo] = f"{abs(hash(spec.repo)) % 16**40:040x}"
            if getattr(spec, "gated", False):
                gated.add(spec.repo)
    sdxl = REG.get("sdxl-base").repo
    files[sdxl] = [f for f in files[sdxl] if not f.startswith("unet/") or ".fp16." not in f]  # fp16 unet gone
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
    reg_file.write_text(REGISTRY_PATH.read_text())
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
    for entry in ("controlnets.canny-sd15", "t2i_adapters.t2i-canny-sd15", "ip_adapters.ip-adapter-sd15",
                  "upscalers.sd-x4-upscaler", "preprocessors.depth-anything-v2-small", "evaluators.pickscore"):
        assert f" {entry} " in out, f"doctor skipped {entry}"  # fmt: skip


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
    assert {"models", "vaes", "adapters", "controlnets", "t2i_adapters", "ip_adapters", "upscalers"} <= sections
    assert "cached   models.sd15 " in out and "cached   controlnets.canny-sd15 " in out, out
    cached = sum(line.startswith("cached") for line in lines)
    assert f"{cached} of {len(lines)} entries in the cache" in out

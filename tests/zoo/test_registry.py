"""The registry: every entry validates, references resolve, and bad entries fail naming entry and field."""

import copy

import diffusers
import pytest
import yaml

from helpers import registry as reg_mod
from helpers.base.errors import RegistryError, UnknownModelError
from helpers.base.families import FAMILIES
from helpers.base.schedulers import SCHEDULERS, scheduler_names
from helpers.zoo.registry import REGISTRY_PATH

RAW = yaml.safe_load(REGISTRY_PATH.read_text())
REG = reg_mod.load()
KEYS = list(REG.models)


def test_registry_is_curated_and_broad():
    assert len(REG.models) >= 30
    families = {m.family for m in REG.models.values()}
    assert families == set(FAMILIES)
    assert {"sd-vae-ft-mse", "sdxl-vae-fp16-fix", "taesd", "taesdxl"} <= set(REG.vaes)
    assert {"lcm-lora-sdv1-5", "lcm-lora-sdxl"} <= set(REG.adapters)
    assert any(m.gated for m in REG.models.values())
    assert any(m.tasks == ["inpaint"] for m in REG.models.values())


@pytest.mark.parametrize("key", KEYS)
def test_entry(key):
    m = REG.get(key)
    assert m.key == key
    assert isinstance(m.pipeline_class, type) and issubclass(m.pipeline_class, diffusers.DiffusionPipeline)
    assert m.pipeline in FAMILIES[m.family].pipelines
    assert m.defaults.scheduler in scheduler_names(m.family, m.prediction)
    assert m.description and m.license and m.size.download_gb > 0
    for alias in m.aliases:
        assert REG.get(alias) is m
    for vae in m.components.values():
        assert m.family in REG.vae(vae).families
    for a in m.adapters:
        assert REG.adapter(a).family == m.family
    if m.revision_kind == "commit":
        assert len(m.revision) == 40
    if m.defaults.guidance_scale == 0:
        assert not m.defaults.negative_prompt, "a negative prompt does nothing without guidance"
    if m.base:
        assert m.repo == REG.get(m.base).repo and m.revision == REG.get(m.base).revision


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_pipeline_is_a_diffusers_pipeline(family):
    # The registry checks an entry's pipeline against this table, without importing diffusers.
    for name in FAMILIES[family].pipelines:
        assert issubclass(getattr(diffusers, name), diffusers.DiffusionPipeline), name


def test_keys_and_aliases_are_unique():
    names = [n for m in REG.models.values() for n in (m.key, *m.aliases)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_builds(name):
    spec = SCHEDULERS[name]
    # A missing optional dependency (scipy, torchsde) makes diffusers export a dummy class instead.
    assert issubclass(spec.cls, diffusers.SchedulerMixin), f"{spec.class_name} needs a dependency not installed"
    scheduler = spec.cls(**spec.options)
    scheduler.set_timesteps(4)
    assert len(scheduler.timesteps) >= 4


def test_removed_repos_point_to_their_successors():
    assert REG.get("sd15").repo == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert "runwayml/stable-diffusion-v1-5" in REG.get("sd15").previous_repos
    assert REG.get("runwayml/stable-diffusion-v1-5") is REG.get("sd15")
    for key in ("sd21", "sd21-base"):
        m = REG.get(key)
        assert not m.repo.startswith("stabilityai/") and "mirror" in m.notes.lower()
    assert all("runwayml/" not in m.repo for m in REG.models.values())


def test_unknown_key_suggests():
    with pytest.raises(UnknownModelError, match=r"Did you mean 'sdxl-turbo'"):
        REG.get("sdxl-trubo")
    with pytest.raises(UnknownModelError, match=r"Unknown VAE 'taesdx'.*'taesdxl'"):
        REG.vae("taesdx")


def test_filters():
    assert {m.family for m in REG.list(family="flux")} == {"flux"}
    assert all("inpaint" in m.tasks for m in REG.list(task="inpaint"))
    assert all(m.gated for m in REG.list(gated=True))
    small = REG.list(fits_gb=8)
    assert small and all(m.size.vram_gb <= 8 for m in small)
    assert not {m.key for m in small} & {"flux-dev", "sd35-large"}
    assert all(m.commercial_use is True for m in REG.list(commercial=True))
    table = REG.table(REG.list(family="sdxl"))
    assert list(table.index) == [m.key for m in REG.list(family="sdxl")]
    assert {"family", "gated", "license", "vram_gb"} <= set(table.columns)


def _broken(mutate):
    data = copy.deepcopy(RAW)
    mutate(data)
    return data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["models"]["sd15"].pop("family"), r"models\.sd15\.family: Field required"),
        (lambda d: d["models"]["sd15"].update(pipeline="FluxPipeline"), r"models\.sd15\..*does not belong"),
        (lambda d: d["models"]["sd15"].update(pipeline="StableDiffusionPipelin"), r"models\.sd15\.pipeline:"),
        (lambda d: d["models"]["sd15"].update(revision="abc", revision_kind="commit"), r"models\.sd15\..*40"),
        (lambda d: d["models"]["sd15"]["defaults"].update(scheduler="Euler z"), r"models\.sd15\..*Euler z"),
        (lambda d: d["models"]["flux-dev"]["defaults"].update(scheduler="DDIM"), r"models\.flux-dev\..*DDIM"),
        (lambda d: d["models"]["sd15"].update(components={"vae": "nope"}), r"models\.sd15\.components\.vae"),
        (lambda d: d["models"]["sd15"].update(components={"vae": "sdxl-vae-fp16-fix"}), r"is for \['sdxl'\]"),
        (lambda d: d["models"]["sd15"].update(adapters=["lcm-lora-sdxl"]), r"models\.sd15\.adapters: .*sdxl"),
        (lambda d: d["models"]["sd15"].update(colour="red"), r"models\.sd15\.colour: Extra inputs"),
        (lambda d: d["models"]["sd14"].update(aliases=["sd-1.5"]), r"models\.sd14\.aliases: 'sd-1.5'"),
        (lambda d: d["models"]["sd15"].update(repo="no-owner"), r"models\.sd15\.repo"),
        (lambda d: d["models"]["sd15"].update(variant="fp8"), r"models\.sd15\.variant"),
        (lambda d: d["vaes"]["taesd"].update({"class": "VQModel"}), r"vaes\.taesd\.class"),
        (lambda d: d["models"]["sd15-lcm-lora"].update(repo="x/y"), r"sd15-lcm-lora\.repo: inherited"),
        (lambda d: d.update(extras={}), r"unknown top-level section"),
        (lambda d: d["evaluators"]["pickscore"].update(kind="aesthetic"), r"evaluators\.pickscore\.kind"),
        (lambda d: d["evaluators"]["dinov2-base"].update(revision="abc"), r"evaluators\.dinov2-base\..*40"),
        (lambda d: d["evaluators"]["fid-inception"].pop("sha256"), r"evaluators\.fid-inception\..*sha256"),
        (lambda d: d["evaluators"]["fid-inception"].update(sha256="XYZ"), r"evaluators\.fid-inception\.sha256"),
        (lambda d: d["evaluators"]["clip-vit-l-14"].update(url="https://x/y.pt"), r"clip-vit-l-14\..*either repo"),
        (lambda d: d["evaluators"]["clip-vit-b-16"].pop("license"), r"evaluators\.clip-vit-b-16\.license"),
    ],
)
def test_bad_entries_name_entry_and_field(mutate, message):
    with pytest.raises(RegistryError, match=message):
        reg_mod.parse(_broken(mutate))


def test_bad_yaml_names_the_file(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  sd15: [unclosed\n")
    with pytest.raises(RegistryError, match=str(bad)):
        reg_mod.load(bad)


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path):
    text = REGISTRY_PATH.read_text()
    copied = text.replace("models:\n", "models:\n  sd15:\n    name: copied from sd14\n", 1)
    path = tmp_path / "dup.yaml"
    path.write_text(copied)
    with pytest.raises(RegistryError) as e:
        reg_mod.load(path)
    msg = str(e.value)
    assert str(path) in msg and "'sd15' is given twice" in msg
    first = copied.splitlines().index("  sd15:") + 1
    assert f"lines {first} and " in msg
    line = int(msg.split(" and ")[1].split(":")[0])
    assert copied.splitlines()[line - 1] == "  sd15:" and line != first


def test_missing_registry_file_is_named(tmp_path):
    with pytest.raises(RegistryError, match=r"missing\.yaml: no such registry file"):
        reg_mod.load(tmp_path / "missing.yaml")


def test_environment_variable_chooses_the_registry(tmp_path, monkeypatch):
    small = copy.deepcopy(RAW)
    small["models"] = {"sd15": small["models"]["sd15"]}
    small["gguf"] = {}  # its files replace the denoisers of models this file leaves out
    small["models"]["sd15"]["name"] = "From the other file"
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(small))
    monkeypatch.setenv(reg_mod.REGISTRY_ENV, str(path))
    assert reg_mod.default().get("sd15").name == "From the other file"
    assert list(reg_mod.default().models) == ["sd15"]
    monkeypatch.delenv(reg_mod.REGISTRY_ENV)
    assert reg_mod.default().get("sd15").name != "From the other file"


@pytest.mark.parametrize("section", list(reg_mod.SECTIONS))
def test_a_typo_points_to_the_list_that_shows_the_right_key(section):
    key = next(iter(getattr(REG, section)))
    typo = key + "q"
    with pytest.raises(UnknownModelError) as e:
        REG.get(typo) if section == "models" else REG.entry(section, typo)
    listing = "python -m helpers list" + ("" if section == "models" else f" {section.replace('_', '-')}")
    assert f"Did you mean '{key}'" in str(e.value) and f"Run `{listing}`" in str(e.value), str(e.value)


ENTRIES = [(section, key) for section in reg_mod.SECTIONS for key in getattr(REG, section)]


@pytest.mark.parametrize("section, key", ENTRIES)
def test_every_entry_names_its_sources(section, key):
    spec = REG.get(key) if section == "models" else REG.entry(section, key)
    assert spec.sources, f"{section}.{key} has no `sources`: give the URL of each fact, or say 'unverified' in notes"
    assert all(url.startswith(("https://", "http://")) for url in spec.sources), f"{section}.{key}: sources are URLs"


def test_no_fact_is_written_from_memory():
    text = REGISTRY_PATH.read_text().lower().splitlines()
    lines = [n for n, line in enumerate(text, 1) if any(w in line for w in ("remembered", "from memory"))]
    assert not lines, f"models.yaml lines {lines}: check the fact at its source, or write 'unverified: ...'"


def test_a_gguf_file_names_a_registry_model_and_a_gguf_file():
    data = copy.deepcopy(RAW)
    data["gguf"]["flux-dev-q4-k-s"]["model"] = "flux-deb"
    with pytest.raises(RegistryError, match=r"gguf\.flux-dev-q4-k-s\.model: no model 'flux-deb'"):
        reg_mod.parse(data)
    data = copy.deepcopy(RAW)
    data["gguf"]["flux-dev-q4-k-s"]["file"] = "flux1-dev-Q4_K_S.safetensors"
    with pytest.raises(RegistryError, match=r"gguf\.flux-dev-q4-k-s\.file: .*not a \.gguf file"):
        reg_mod.parse(data)
    assert [g.key for g in REG.gguf_for("flux1-dev")] == ["flux-dev-q4-k-s", "flux-dev-q8-0"]  # by alias too

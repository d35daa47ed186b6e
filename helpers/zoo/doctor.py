"""Check the registry against the Hub (needs network): repos exist, revisions resolve, files and gates match.

python -m helpers doctor                 # every entry
python -m helpers doctor sd15 flux-dev   # some
python -m helpers doctor --pin           # also write each branch entry's current commit into models.yaml

Every section is checked (models, LoRAs, VAEs, ControlNets, T2I- and IP-Adapters, upscalers, preprocessors,
evaluators): the repo and revision, the gate, the files an entry loads, their weight format (safetensors or an
opted-in .bin) and variant; an evaluator at a URL, that the URL answers. When the Hub cannot be reached, that is
said once and only the local cache is checked: which entries are there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from huggingface_hub import HfApi, get_session, try_to_load_from_cache
from huggingface_hub import errors as hub_errors

from ..base import online as hub
from ..base.errors import RegistryError
from . import registry as registry_mod


@dataclass
class Check:
    """What the Hub says about one registry entry."""

    section: str
    key: str
    repo: str
    revision: str
    commit: str | None = None  # what the revision resolves to now
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _weight_folders(files: set[str]) -> dict[str, list[str]]:
    folders: dict[str, list[str]] = {}
    for f in files:
        if "/" in f and f.endswith((".safetensors", ".bin")):
            folder, name = f.rsplit("/", 1)
            if name.startswith(("diffusion_pytorch_model", "model", "pytorch_model")):
                folders.setdefault(folder, []).append(name)
    return folders


def _file_problems(spec, files: set[str]) -> list[str]:
    problems = []
    if getattr(spec, "single_file", None):  # a single checkpoint file, not a diffusers folder
        return [] if spec.single_file in files else [f"no file '{spec.single_file}' at {spec.revision}"]
    if "model_index.json" not in files:
        return [f"no model_index.json at {spec.revision}: not a diffusers pipeline repo (or an old revision)"]
    for folder, names in sorted(_weight_folders(files).items()):
        if folder in spec.layout.missing:
            continue
        if spec.weights == "safetensors" and not any(n.endswith(".safetensors") for n in names):
            problems.append(f"{folder}/ has only pickled .bin weights; the entry says safetensors")
        wants_variant = spec.variant and (
            spec.layout.variant_components is None or folder in spec.layout.variant_components
        )
        has_variant = (
            any(f".{spec.variant}." in n or f".{spec.variant}-" in n for n in names) if spec.variant else False
        )
        if wants_variant and not has_variant:
            problems.append(f"{folder}/ has no '{spec.variant}' variant file; the entry says it does")
    for missing in spec.layout.missing:
        if any(f.startswith(missing + "/") for f in files):
            problems.append(f"the entry says the repo has no {missing}/, but it does")
    return problems


def check(spec, section: str, api: HfApi) -> Check:
    """Look one entry up on the Hub."""
    result = Check(section, spec.key, spec.repo, spec.revision)
    try:
        info = api.model_info(spec.repo, revision=spec.revision)
    except hub_errors.RevisionNotFoundError:
        result.problems.append(f"revision '{spec.revision}' not found")
        return result
    except hub_errors.RepositoryNotFoundError:
        result.problems.append("repo not found: deleted, renamed or private")
        return result
    except (hub_errors.HfHubHTTPError, OSError) as e:
        result.problems.append(f"could not check: {str(e).splitlines()[0]}")
        return result
    result.commit = info.sha
    files = {s.rfilename for s in info.siblings or []}
    gated = bool(info.gated)
    if hasattr(spec, "gated") and gated != spec.gated:
        result.problems.append(f"the Hub says gated={gated}, the entry says gated={spec.gated}")
    if section in ("models", "upscalers") and not getattr(spec, "file", None):
        result.problems += _file_problems(spec, files)
    elif key_file(spec, section) not in files:
        result.problems.append(f"no file '{key_file(spec, section)}' in the repo")
    else:
        result.problems += _module_problems(spec, section, files)
    if getattr(spec, "processor", None):  # PickScore's tokenizer and image processor live in another repo
        result.problems += [f"processor {spec.processor}: {p}" for p in _processor_problems(spec, api)]
    return result


def _module_problems(spec, section: str, files: set[str]) -> list[str]:
    """A module's weight format and variant (VAEs, ControlNets, T2I-Adapters) and an IP-Adapter's image encoder."""
    if section == "ip_adapters":
        encoder = f"{spec.image_encoder}/config.json"
        return [] if encoder in files else [f"no image encoder '{encoder}' in the repo"]
    if not hasattr(spec, "weights") or any(getattr(spec, a, None) for a in ("weight_name", "file", "files")):
        return []  # a module in named files (an upscaler network, a detector's weights): `key_file` checks them
    folder = f"{spec.subfolder}/" if getattr(spec, "subfolder", None) else ""
    names = [f[len(folder) :] for f in files if f.startswith(folder) and "/" not in f[len(folder) :]]
    weights = [n for n in names if n.startswith(("diffusion_pytorch_model", "model.", "pytorch_model"))]
    safe = [n for n in weights if n.endswith(".safetensors")]
    problems = []
    if spec.weights == "safetensors" and weights and not safe:
        where = folder or "the repo root "
        problems.append(f"{where}has only pickled .bin weights; the entry says safetensors (`weights: bin` opts in)")
    elif spec.weights == "bin" and safe:
        problems.append(f"{folder or 'the repo root '}has safetensors weights now; set `weights: safetensors`")
    pool = safe if spec.weights == "safetensors" else weights
    variants = sorted({n.split(".")[1] for n in pool if n.count(".") >= 2})
    variant = getattr(spec, "variant", None)  # preprocessors have none
    if variant and variant not in variants:
        problems.append(f"no '{variant}' variant file; the entry says it has one")
    elif not variant and variants and hasattr(spec, "variant"):
        problems.append(f"the repo has {variants} variant files; `variant: {variants[0]}` would halve the download")
    return problems


def _processor_problems(spec, api: HfApi) -> list[str]:
    try:
        info = api.model_info(spec.processor, revision=spec.processor_revision)
    except hub_errors.RevisionNotFoundError:
        return [f"revision '{spec.processor_revision}' not found"]
    except hub_errors.RepositoryNotFoundError:
        return ["repo not found: deleted, renamed or private"]
    except (hub_errors.HfHubHTTPError, OSError) as e:
        return [f"could not check: {str(e).splitlines()[0]}"]
    files = {s.rfilename for s in info.siblings or []}
    return [] if "preprocessor_config.json" in files else ["no preprocessor_config.json in the repo"]


def torch_hub_checkpoints() -> Path:
    """Where torch.hub keeps downloaded weights (TORCH_HOME, else XDG_CACHE_HOME/torch), without importing torch."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return Path(os.environ.get("TORCH_HOME", cache / "torch")).expanduser() / "hub" / "checkpoints"


def check_url(spec, offline: bool) -> Check:
    """An evaluator file at a URL: offline, whether torch.hub has it; online, whether the URL answers."""
    result = Check("evaluators", spec.key, spec.url, spec.revision)
    cached = torch_hub_checkpoints() / spec.file
    if offline:
        if not cached.is_file():
            result.problems.append(f"not in the local cache ({cached})")
        return result
    try:
        answer = get_session().head(spec.url, follow_redirects=True, timeout=10)
    except Exception as e:  # noqa: BLE001 - any transport error (DNS, TLS, timeout) means: not checked
        result.problems.append(f"could not check: {(str(e) or type(e).__name__).splitlines()[0]}")
        return result
    if answer.status_code >= 400:
        result.problems.append(f"the URL answers HTTP {answer.status_code}: the file moved or was removed")
    if spec.sha256 and spec.sha256 not in spec.file:
        result.problems.append(f"the file name does not carry the sha256 prefix {spec.sha256} that torch.hub checks")
    return result


def key_file(spec, section: str) -> str:
    """The file an entry cannot load without: what is looked for on the Hub, and in the cache offline."""
    if section == "models" and getattr(spec, "single_file", None):
        return spec.single_file
    if getattr(spec, "file", None):  # an upscaler network in one file
        return spec.file
    if getattr(spec, "files", None):  # a controlnet_aux detector's files: the first, its main network
        return spec.files[0]
    if section in ("models", "upscalers"):
        return "model_index.json"
    if section == "adapters":
        return spec.weight_name
    if section == "gguf":
        return spec.file
    if section == "ip_adapters":
        return f"{spec.subfolder}/{spec.weight_name}"
    if getattr(spec, "weight_name", None):  # a single-file ControlNet
        return spec.weight_name
    subfolder = getattr(spec, "subfolder", None)
    return f"{subfolder}/config.json" if subfolder else "config.json"


def from_cache(spec, section: str, cache_dir=None) -> Check:
    """What the local cache says about an entry, for when the Hub cannot be asked: whether its key file is there
    at the entry's revision, and at which commit."""
    result = Check(section, spec.key, spec.repo, spec.revision)
    found = try_to_load_from_cache(spec.repo, key_file(spec, section), revision=spec.revision, cache_dir=cache_dir)
    if isinstance(found, str):
        parts = Path(found).parts
        result.commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
    else:
        result.problems.append(f"not in the local cache ({key_file(spec, section)} at {spec.revision[:12]})")
    return result


def run(keys: list[str] | None = None, pin: bool = False, path: str | Path | None = None) -> list[Check]:
    """Check entries (all, or `keys` of any section); with `pin`, write resolved commits into the registry file."""
    path = Path(path) if path else registry_mod.default_path()
    reg = registry_mod.load(path)
    entries, at_urls = [], []
    for section in registry_mod.SECTIONS:
        for key, spec in getattr(reg, section).items():
            if keys and key not in keys and not (section == "models" and spec.key in _resolve(reg, keys)):
                continue
            if section == "models" and spec.base:
                continue  # a derived model's repo is its base's
            (entries if getattr(spec, "repo", None) else at_urls).append((section, spec))
    if keys:
        known = {s.key for _, s in entries + at_urls} | {s.key for s in reg.models.values() if s.base}
        for k in keys:
            if k not in known:
                reg.find(k)  # raises the "did you mean" error
    offline = bool(hub.unreachable(say=False))  # once, not once per entry: then only the cache can be asked
    if offline:
        return [from_cache(spec, section) for section, spec in entries] + [check_url(s, True) for _, s in at_urls]
    api = HfApi()
    checks = [check(spec, section, api) for section, spec in entries] + [check_url(s, False) for _, s in at_urls]
    if pin:
        pins = {(c.section, c.key): c.commit for c in checks if c.ok and c.commit and not _is_sha(c.revision)}
        if pins:
            pin_revisions(path, pins)
    return checks


def _resolve(reg, keys) -> set[str]:
    out = set()
    for k in keys:
        try:
            out.add(reg.get(k).key)
        except KeyError:
            pass
    return out


def _is_sha(revision: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{40}", revision))


def pin_revisions(path: Path, pins: dict[tuple[str, str], str]) -> None:
    """Rewrite `revision:` and `revision_kind:` of the given entries in place, keeping every comment."""
    text = path.read_text(encoding="utf-8")
    for (section, key), sha in pins.items():
        if not isinstance(yaml.safe_load(sha), str):  # all digits, or digits with one 'e', would load as a number
            sha = f'"{sha}"'
        sec = re.search(rf"(?m)^{section}:\s*$", text)
        if not sec:
            raise RegistryError(f"{path}: no section '{section}'")
        entry = re.compile(rf"(?m)^  {re.escape(key)}:\s*$").search(text, sec.end())
        if not entry:
            raise RegistryError(f"{path}: no entry {section}.{key}")
        end = re.compile(r"(?m)^(  \S|\S)").search(text, entry.end())
        block = text[entry.end() : end.start() if end else len(text)]
        if not re.search(r"(?m)^    revision:", block):
            block_with = re.sub(r"(?m)^(    repo:.*)$", rf"\1\n    revision: {sha}", block, count=1)
        else:
            block_with = re.sub(r"(?m)^(    revision:\s*).*$", rf"\g<1>{sha}", block, count=1)
        new = block_with
        new = re.sub(r"(?m)^(    revision_kind:\s*).*$", r"\g<1>commit", new, count=1)
        if "    revision_kind:" not in new:
            new = re.sub(r"(?m)^(    revision:.*)$", r"\1\n    revision_kind: commit", new, count=1)
        text = text[: entry.end()] + new + text[entry.end() + len(block) :]
    registry_mod.parse(yaml.safe_load(text), path)  # never write a registry that does not load
    path.write_text(text, encoding="utf-8")

"""Sweep files: a sweep written down in YAML, checked with errors that name the line and the field.

```yaml
out: outputs/steps-by-cfg
params: {model: sd15, prompt: "a lighthouse at dusk", seed: 42}
axes:
  x: {name: num_inference_steps, values: [10, 20, 30]}
  y: {name: guidance_scale, values: [3, 7, 11]}
  z: {name: model, values: [sd15, dreamshaper-8]}
```

    python -m helpers sweep SWEEP.yaml                      # one process
    accelerate launch -m helpers sweep SWEEP.yaml           # one process per GPU
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..base.errors import ZooError
from .sweep import generate_arguments, plan, sweep


class _AxisFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    values: list = Field(min_length=1)


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out: str
    params: dict = Field(default_factory=dict)
    axes: dict[Literal["x", "y", "z"], _AxisFile]
    device: str = "auto"
    title: str | None = None


def _line(node, path: tuple) -> int | None:
    """The 1-based line of `path` in a composed YAML node tree (or of the deepest part that exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return line
            node, line = match[1], match[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def load(path: str | Path) -> SweepFile:
    """Read and check a sweep file; any error says the file, the line and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data, tree = yaml.safe_load(text), yaml.compose(text)
    except FileNotFoundError:
        raise ZooError(f"{path}: no such sweep file") from None
    except yaml.YAMLError as e:
        raise ZooError(f"{path}: not valid YAML: {e}") from None
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ZooError(f"{path}, line {_line(tree, err['loc'])}: {field}: {err['msg']}") from None
    for name in spec.params:
        if name not in generate_arguments() | {"prompt"}:
            raise ZooError(f"{path}, line {_line(tree, ('params', name))}: params.{name}: not a generate() argument")
    for slot, axis in spec.axes.items():
        try:
            plan({**spec.params, "model": spec.params.get("model", "x")}, {slot: (axis.name, axis.values)})
        except ZooError as e:
            raise ZooError(f"{path}, line {_line(tree, ('axes', slot, 'name'))}: axes.{slot}: {e}") from None
    return spec


def write(path: str | Path, params: dict, axes: dict, out: str, title: str | None = None) -> Path:
    """Write a sweep (the `params` and `axes` of `helpers.sweep`) as a sweep file; returns its path.

    An existing file with other contents is never replaced: the error says so and names it.
    """
    path = Path(path)
    data = {"out": str(out), **({"title": title} if title else {}), "params": dict(params)}
    data["axes"] = {slot: {"name": name, "values": list(values)} for slot, (name, values) in axes.items()}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None)
    if path.exists() and path.read_text(encoding="utf-8") != text:
        raise ZooError(f"{path} exists with other contents; it was left as it is. Choose another file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    load(path)  # what was written reads back as a valid sweep file
    return path


def run(path: str | Path, out: str | None = None):
    """Run a sweep file (under `accelerate launch`, on every process)."""
    spec = load(path)
    axes = {slot: (a.name, a.values) for slot, a in spec.axes.items()}
    return sweep(spec.params, axes, out_dir=out or spec.out, device=spec.device, title=spec.title)

"""Scheduler names people know (the AUTOMATIC1111 web UI's), mapped to diffusers classes and options.

One table, read by the registry (to validate defaults) and by generation (to build schedulers).
Samplers follow diffusers' own mapping table:
https://huggingface.co/docs/diffusers/api/schedulers/overview
"""

from dataclasses import dataclass, field

from .errors import ZooError
from .families import FAMILIES
from .loaded import record


@dataclass(frozen=True)
class SchedulerSpec:
    """A named sampler: the diffusers class and the config options that make it that sampler."""

    name: str
    class_name: str
    options: dict = field(default_factory=dict)
    families: frozenset = frozenset()

    @property
    def cls(self):
        import diffusers  # here, not at the top: the registry reads this table without loading diffusers

        return getattr(diffusers, self.class_name)


# Families that denoise in discrete timesteps (epsilon or v-prediction) share the classic samplers.
UNET_FAMILIES = frozenset(k for k, f in FAMILIES.items() if f.samplers == "discrete")
FLOW_FAMILIES = frozenset(k for k, f in FAMILIES.items() if f.samplers == "flow")
EDM_FAMILIES = frozenset({"sdxl"})  # Playground v2.5 (an SDXL U-Net trained with EDM)

_KARRAS = {"use_karras_sigmas": True}

SCHEDULERS = {
    s.name: s
    for s in [
        SchedulerSpec("Euler", "EulerDiscreteScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("Euler a", "EulerAncestralDiscreteScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("Heun", "HeunDiscreteScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("LMS", "LMSDiscreteScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("LMS Karras", "LMSDiscreteScheduler", _KARRAS, UNET_FAMILIES),
        SchedulerSpec("DPM2", "KDPM2DiscreteScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", _KARRAS, UNET_FAMILIES),
        SchedulerSpec(
            "DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, UNET_FAMILIES
        ),
        SchedulerSpec(
            "DPM++ 2M SDE Karras",
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", **_KARRAS},
            UNET_FAMILIES,
        ),
        SchedulerSpec("DPM++ SDE", "DPMSolverSDEScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("DPM++ SDE Karras", "DPMSolverSDEScheduler", _KARRAS, UNET_FAMILIES),
        SchedulerSpec("DDIM", "DDIMScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("PNDM", "PNDMScheduler", {"skip_prk_steps": True}, UNET_FAMILIES),  # PLMS, as SD ships it
        SchedulerSpec("UniPC", "UniPCMultistepScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("DEIS", "DEISMultistepScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("LCM", "LCMScheduler", {}, UNET_FAMILIES),
        SchedulerSpec("Flow Euler", "FlowMatchEulerDiscreteScheduler", {}, FLOW_FAMILIES),
        # UniPC on flow-matching sigmas, as diffusers runs it for flow models (checked to run with SD3, FLUX, FLUX.2
        # and Chroma). Z-Image passes its own sigmas as a list, which UniPC's flow shift cannot take.
        SchedulerSpec(
            "Flow UniPC",
            "UniPCMultistepScheduler",
            {"use_flow_sigmas": True, "prediction_type": "flow_prediction"},
            FLOW_FAMILIES - {"zimage"},
        ),
        # FLUX passes its own sigmas, which the Heun flow sampler cannot take.
        SchedulerSpec("Flow Heun", "FlowMatchHeunDiscreteScheduler", {}, frozenset({"sd3"})),
        SchedulerSpec("EDM Euler", "EDMEulerScheduler", {}, EDM_FAMILIES),
        SchedulerSpec("EDM DPM++ 2M", "EDMDPMSolverMultistepScheduler", {}, EDM_FAMILIES),
    ]
}

DEFAULT = "default"  # keep the scheduler the repo ships


def scheduler_names(family: str, prediction: str | None = None) -> list[str]:
    """The names valid for a family (and prediction type), in table order, `"default"` first."""
    if prediction == "edm":
        return [DEFAULT] + [n for n, s in SCHEDULERS.items() if s.class_name.startswith("EDM")]
    names = [n for n, s in SCHEDULERS.items() if family in s.families and not s.class_name.startswith("EDM")]
    return [DEFAULT] + names


def set_scheduler(pipe, name: str, options: dict | None = None, family: str | None = None, prediction=None):
    """Give `pipe` the named sampler, built from the repo's own scheduler config; never reloads the model.

    `"default"` restores the scheduler the repo ships. The family (and prediction type) decide which names
    are valid; an invalid one is an error listing the valid names.
    """
    rec = record(pipe)
    spec = rec.spec
    family = family or (spec.family if spec else None)
    prediction = prediction or (spec.prediction if spec else None)
    valid = scheduler_names(family, prediction) if family else [DEFAULT, *SCHEDULERS]
    if name not in valid:
        who = f"'{spec.key}' ({family})" if spec else f"this {family or ''} pipeline"
        raise ZooError(f"Scheduler '{name}' is not valid for {who}; use one of: {', '.join(valid)}")
    original = rec.default_scheduler
    options = dict(options or {})
    if name == DEFAULT:
        pipe.scheduler = type(original).from_config(original.config, **options)
    else:
        chosen = SCHEDULERS[name]
        pipe.scheduler = chosen.cls.from_config(original.config, **{**chosen.options, **options})
    return pipe.scheduler


def sampler_name(scheduler) -> str:
    """The web UI's name for a scheduler object ("PNDM" for the one SD 1.5 ships), else its class name."""
    config = dict(scheduler.config)
    matches = [
        s for s in SCHEDULERS.values()
        if s.class_name == type(scheduler).__name__ and all(config.get(k) == v for k, v in s.options.items())
    ]  # fmt: skip
    return max(matches, key=lambda s: len(s.options)).name if matches else type(scheduler).__name__

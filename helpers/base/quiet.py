"""Quiet, useful output: no library noise a user can do nothing about, and one labelled progress bar per call.

Importing this module (every loading path does) keeps out diffusers' warnings about its own internal imports,
and says the Hub's offline notices (huggingface_hub's and diffusers', two per load) once, in our words.
`loading()` turns off the per-component loading bars of diffusers and transformers (download bars stay);
`one_bar()` gives a generate call one bar over all its pipeline calls instead of one bar each; in a notebook its
end is also printed as text, which static renderings (GitHub, nbviewer, HTML exports) show where widgets are blank.
Inside `outer_bar()` (a sweep, whose own bar advances per cell) the calls show no bar at all.

>>> with loading():
...     pipe = DiffusionPipeline.from_pretrained(repo)   # no "Loading pipeline components" / "Loading weights" bars
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import warnings

import diffusers
import huggingface_hub
import transformers
from tqdm.auto import tqdm
from tqdm.notebook import tqdm as notebook_tqdm

from . import library_notices
from . import online as hub  # library_notices: imported first of all by helpers/__init__

# The Hub's notices when it cannot be reached: logger -> the start of its message. Each load printed both.
OFFLINE_NOTICES = {
    "huggingface_hub.hf_api": "Could not reach the Hub",
    "diffusers.pipelines.pipeline_utils": "Couldn't connect to the Hub",
}
_SAID = hub.SAID  # the offline notices already said in this process

# diffusers warns about its own modules importing its deprecated names: nothing a user can change.
warnings.filterwarnings("ignore", message=r".*Importing and using `\w+` from `diffusers\.", category=FutureWarning)


def offline_notice() -> str:
    """What we say, once, instead of the Hub's notices."""
    return hub.notice()


class _OfflineNotice(logging.Filter):
    """Drops the Hub's offline notices; the first one in the process is said once, in our words, instead."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.text):
            return True
        notice = offline_notice()
        if notice not in _SAID:
            _SAID.add(notice)
            print(notice)
        return False


for _name, _text in OFFLINE_NOTICES.items():
    logging.getLogger(_name).addFilter(_OfflineNotice(_text))


_Drop = library_notices.Drop


# A LoRA with no text-encoder weights (LCM-LoRA, most style LoRAs): diffusers itself says "safe to ignore".
HARMLESS = {
    "diffusers.loaders.lora_base": "No LoRA keys associated to",
    "diffusers.loaders.peft": "No LoRA keys associated to",
}
for _name, _text in HARMLESS.items():
    logging.getLogger(_name).addFilter(_Drop(_text))


@contextlib.contextmanager
def loading():
    """Within the block, diffusers' and transformers' loading bars are off; the Hub's download bars are left as set."""
    dl, tl, hub = diffusers.utils.logging, transformers.utils.logging, huggingface_hub.utils
    before = dl.is_progress_bar_enabled(), tl.is_progress_bar_enabled(), hub.are_progress_bars_disabled()
    dl.disable_progress_bar()
    tl.disable_progress_bar()  # which turns the Hub's bars off too: downloads keep theirs
    if not before[2]:
        hub.enable_progress_bars()
    try:
        yield
    finally:
        if before[0]:
            dl.enable_progress_bar()
        if before[1]:
            tl.enable_progress_bar()
        elif not before[2]:
            hub.enable_progress_bars()


_OUTER = contextvars.ContextVar("outer_bar", default=False)  # True inside `outer_bar()` (per thread)


@contextlib.contextmanager
def outer_bar():
    """Within the block an outer bar (a sweep's, over its cells) stands for the work: calls show no bar of their own.

    >>> with outer_bar():
    ...     for cell in tqdm(cells, desc="sweep"):
    ...         generate(...)        # no "[sd15] 1 image" bar stacked under the sweep's
    """
    token = _OUTER.set(True)
    try:
        yield
    finally:
        _OUTER.reset(token)


@contextlib.contextmanager
def one_bar(pipe, desc: str, calls: int, steps: int):
    """One bar over `calls` pipeline calls of about `steps` steps each; yields `chain(call_kwargs) -> call_kwargs`.

    The pipeline's own bar is off inside the block; the bar advances from `callback_on_step_end` (chained
    before any callback already in the call) and its total is corrected to the pipeline's real number of
    timesteps (img2img runs `strength` of them) at the first step.
    """
    before = dict(getattr(pipe, "_progress_bar_config", None) or {})
    if _OUTER.get():  # an outer bar counts this call: neither ours nor the pipeline's own
        pipe.set_progress_bar_config(**{**before, "disable": True})
        try:
            yield lambda call: call
        finally:
            pipe.set_progress_bar_config(**before)
        return
    if "callback_on_step_end" not in inspect.signature(type(pipe).__call__).parameters:
        pipe.set_progress_bar_config(**{**before, "desc": desc})  # an older pipeline: its own bar, labelled
        try:
            yield lambda call: call
        finally:
            pipe.set_progress_bar_config(**before)
        return
    pipe.set_progress_bar_config(**{**before, "disable": True})
    bar = tqdm(total=calls * steps, desc=desc, unit="step")
    sized = []

    def chain(call: dict) -> dict:
        then = call.get("callback_on_step_end")

        def step_end(pipeline, i, t, tensors):
            if not sized:
                sized.append(getattr(pipeline, "num_timesteps", None) or steps)
                if sized[0] != steps:
                    bar.reset(total=calls * sized[0])
            bar.update(1)
            return then(pipeline, i, t, tensors) if then is not None else tensors

        return {**call, "callback_on_step_end": step_end}

    try:
        yield chain
    finally:
        seconds = bar.format_dict["elapsed"]
        bar.close()
        pipe.set_progress_bar_config(**before)
        if isinstance(bar, notebook_tqdm):  # a widget: static renderings of the notebook show
            print(f"{desc}: {bar.n} steps in {seconds:.1f} s")  # nothing there, so the bar's end is also text


# The pipelines' own notices that a long prompt is cut: logger (None: the pipeline's modules) -> text.
TRUNCATION = {
    None: "The following part of your input was truncated",
    "transformers.tokenization_utils_base": "Token indices sequence length is longer than the specified maximum",
}


@contextlib.contextmanager
def no_truncation_notice(pipe):
    """Within the block, the pipeline's own notices that the prompt is cut are dropped.

    `generate` says it itself, in one line naming the first dropped words; what it does not warn about is a
    CLIP encoder's cut beside a T5 encoder that reads the whole prompt (FLUX, SD3), which no one can change.
    """
    mine = {c.__module__ for c in type(pipe).__mro__ if c.__module__.startswith("diffusers.")}
    names = [(n, text) for name, text in TRUNCATION.items() for n in ([name] if name else mine)]
    pairs = [(logging.getLogger(n), _Drop(text)) for n, text in names]
    for logger, drop in pairs:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger, drop in pairs:
            logger.removeFilter(drop)

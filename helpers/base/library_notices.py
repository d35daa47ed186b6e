"""The libraries' notices that no user of the zoo can act on, kept out for the whole process.

This module imports nothing but the standard library, so that `helpers/__init__` can import it before anything
imports torch, diffusers or transformers: some of these notices are printed while those libraries import.
(`quiet.py` holds the notices kept out only around a call, and says the Hub's offline notices once.)
"""

from __future__ import annotations

import logging
import warnings

# logger -> text in its message: dropped wherever it is logged from. Each is about the libraries' own calls.
DROPPED = {
    # bitsandbytes loads its CPU kernels through `kernels` when it is imported (peft imports it); offline, every
    # command said that a trust check it cannot make was skipped.
    "kernels._internals.hf_hub": "Skipping publisher trust check for",
    # diffusers' `.to(dtype)` warns about the modules to keep in float32 even when there are none (ControlNets,
    # IP-Adapter projections); a real list of modules is still said.
    "diffusers.models.modeling_utils": "that should be kept in float32: [].",
    # Loading a textual-inversion embedding grows the token table; the new rows' initial values, which this
    # notice is about, are replaced by the loaded vectors at once.
    "transformers.modeling_utils": "will be initialized from a multivariate normal distribution",
    # torchao 0.18 registers its own enums with torch's pytree when diffusers imports it, which torch 2.14 calls
    # deprecated: a note to torchao's authors, printed on every import.
    "torch.utils._pytree": "is an Enum subclass and is now natively supported",
    # diffusers lists torchao's tensor classes for loading torchao-serialized checkpoints, and torchao 0.18 moved some;
    # the zoo quantizes at load time and never reads such a checkpoint.
    "diffusers.quantizers.torchao.torchao_quantizer": "Unable to import `torchao` Tensor objects",
}

# (category, the start of the message): Python warnings raised inside the libraries about the libraries' own calls.
IGNORED = (
    # torchvision scripts a few functions with `torch.jit.script` when transformers or diffusers import it.
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
    # diffusers' `load_config` passes this argument to huggingface_hub, which deprecated it.
    (UserWarning, r"The `local_dir_use_symlinks` argument is deprecated"),
)


class Drop(logging.Filter):
    """A logging filter that drops the records whose message contains `text`."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


for _name, _text in DROPPED.items():
    logging.getLogger(_name).addFilter(Drop(_text))
for _category, _message in IGNORED:
    warnings.filterwarnings("ignore", message=_message, category=_category)

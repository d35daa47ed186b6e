"""Errors for people: each says what went wrong, with which model or file, and what to do next."""

import logging

# Library messages that are harmless here and would bury the user's own output (every command printed them):
# logger name -> text of the message. Kept out in this one place, which every module imports first.
HARMLESS = {
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward",  # 4-bit is only used on CUDA
    "transformers.utils.import_utils": "requires torchvision (not installed)",  # the PIL processors are used
}


class _Harmless(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


for _name, _text in HARMLESS.items():
    logging.getLogger(_name).addFilter(_Harmless(_text))


class ZooError(Exception):
    """Base class of every error this package raises on purpose."""


class RegistryError(ZooError, ValueError):
    """`models.yaml` (or a user's registry file) has a bad entry or field."""


class UnknownModelError(ZooError, KeyError):
    """A model, VAE or adapter key that the registry does not know."""

    def __str__(self):  # KeyError would quote the message
        return self.args[0] if self.args else ""


class ModelAccessError(ZooError, OSError):
    """The Hub refused or could not serve a model: gated, no token, deleted, missing revision or variant."""


class ModelNotCachedError(ModelAccessError):
    """No network (or HF_HUB_OFFLINE=1) and the model is not in the local cache."""

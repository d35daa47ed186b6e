"""Errors for people: each says what went wrong, with which model or file, and what to do next."""


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

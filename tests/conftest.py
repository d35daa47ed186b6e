"""Fixtures: the offline hub (the environment itself is set in tests/environment.py)."""

import os

import pytest

from .environment import build_hub


@pytest.fixture(scope="session")
def offline_hub_dir():
    """The built offline hub (HF_HUB_CACHE points here for the whole session)."""
    return build_hub()


@pytest.fixture
def hub(offline_hub_dir):
    """The built offline hub, with whatever earlier tests left loaded (for modules that load little or reuse it)."""
    return offline_hub_dir


@pytest.fixture
def fresh_hub(offline_hub_dir):
    """The built offline hub with nothing loaded: every pipeline and upscaler freed before the test and after it."""
    from helpers import upscale
    from helpers.run import cache

    def free():
        cache.free()
        upscale.free()

    free()
    yield offline_hub_dir
    free()


@pytest.fixture(scope="session")
def registry():
    from helpers import registry

    return registry.default()


def pytest_configure(config):
    # Each pytest-xdist worker gets one core's worth of threads instead of all workers fighting for every core.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)

"""Test set-up: an offline hub of tiny models, built once and reused while its sources are unchanged.

The environment is set before anything imports huggingface_hub, as it would be for a user who exports
HF_HUB_CACHE and HF_HUB_OFFLINE=1 in a shell.
"""

import hashlib
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SOURCES = [ROOT / "models.yaml", ROOT / "helpers" / "tiny.py", ROOT / "helpers" / "offline_hub.py"]
_DIGEST = hashlib.sha256(b"".join(p.read_bytes() for p in _SOURCES)).hexdigest()[:16]
HUB_DIR = Path(os.environ.get("SDZOO_TEST_HUB", ROOT / ".cache" / "offline-hub")) / _DIGEST

os.environ["HF_HUB_CACHE"] = str(HUB_DIR)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ["HF_TOKEN_PATH"] = str(HUB_DIR.parent / "no-token")  # never a developer's real token

import pytest  # noqa: E402


def _build_hub():
    from filelock import FileLock

    from helpers import offline_hub

    HUB_DIR.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(HUB_DIR) + ".lock"):  # pytest-xdist workers wait for the first one
        if not (HUB_DIR / offline_hub.BUILD_MARK).exists():
            for stale in HUB_DIR.parent.iterdir():  # hubs built from older sources
                if stale.is_dir() and stale != HUB_DIR and len(stale.name) == len(HUB_DIR.name):
                    shutil.rmtree(stale, ignore_errors=True)
            offline_hub.build(HUB_DIR)
    return HUB_DIR


@pytest.fixture(scope="session")
def offline_hub_dir():
    """The built offline hub (HF_HUB_CACHE points here for the whole session)."""
    return _build_hub()


@pytest.fixture(scope="session")
def registry():
    from helpers import registry

    return registry.default()


def pytest_configure(config):
    # Each pytest-xdist worker gets one core's worth of threads instead of all workers fighting for every core.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)

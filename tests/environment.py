"""The test environment, shared by the tests and the notebooks (their kernels inherit it).

An offline hub of tiny models, built once and reused while its sources are unchanged; HF_HUB_OFFLINE=1;
no developer token; the notebooks' smoke switch on. Set before anything imports huggingface_hub, as a
user would export them in a shell.
"""

import hashlib
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SOURCES = [ROOT / "models.yaml", *(ROOT / "helpers" / "offline" / f for f in ("tiny.py", "hub.py", "checkpoints.py")),
            ROOT / "helpers" / "zoo" / "checkpoints.py"]  # the last two write and place single-file entries
_DIGEST = hashlib.sha256(b"".join(p.read_bytes() for p in _SOURCES)).hexdigest()[:16]
HUB_DIR = Path(os.environ.get("SDZOO_TEST_HUB", ROOT / ".cache" / "offline-hub")) / _DIGEST

os.environ["HF_HUB_CACHE"] = str(HUB_DIR)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TORCH_HOME"] = f"{HUB_DIR}-torch"  # torch.hub's cache: the FID Inception stand-in (offline_hub.torch_home)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["SDZOO_CACHE"] = f"{HUB_DIR}-user-cache"  # compiled artifacts (helpers.run.compilecache), not in ~/.cache
os.environ.pop("HF_TOKEN", None)
os.environ["HF_TOKEN_PATH"] = str(HUB_DIR.parent / "no-token")  # never a developer's real token
os.environ["SDZOO_SMOKE"] = "1"  # notebooks shrink steps, sizes and counts (helpers/base/smoke.py)
os.environ.setdefault("MPLBACKEND", "Agg")


def build_hub() -> Path:
    """Build the offline hub unless this exact one is built already (safe with pytest-xdist workers)."""
    from filelock import FileLock

    from helpers.offline import hub as offline_hub

    HUB_DIR.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(HUB_DIR) + ".lock"):
        if not (HUB_DIR / offline_hub.BUILD_MARK).exists():
            for stale in HUB_DIR.parent.iterdir():  # hubs built from older sources
                digest = stale.name.removesuffix("-torch").removesuffix("-user-cache")
                if stale.is_dir() and digest != HUB_DIR.name and len(digest) == len(HUB_DIR.name):
                    shutil.rmtree(stale, ignore_errors=True)
            offline_hub.build(HUB_DIR)
    return HUB_DIR

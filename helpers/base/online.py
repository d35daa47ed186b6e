"""Whether the Hugging Face Hub can be reached: asked once per process, in one request with no retries.

Without a network every Hub call would otherwise fail through huggingface_hub's retries (five, with backoff) before
the zoo's own message. When the one request fails, the process goes offline the way `HF_HUB_OFFLINE=1` does
(huggingface_hub reads `constants.HF_HUB_OFFLINE` at each request), so models load from the local cache at once.
"""

from __future__ import annotations

import os

from huggingface_hub import constants

_STATE: dict[str, str | None] = {}  # "why": None when reachable, else why not; absent until asked
SAID: set[str] = set()  # the offline notices already said in this process (also helpers.quiet's)


def offline_by_setting() -> bool:
    """Whether the user asked for offline mode (HF_HUB_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def unreachable(say: bool = True) -> str | None:
    """Why the Hub cannot be reached (said once unless `say` is False, then offline for the process); None when
    it can."""
    if offline_by_setting():
        return "offline (HF_HUB_OFFLINE=1)"
    if "why" not in _STATE:
        _STATE["why"] = _probe()
        if _STATE["why"]:
            constants.HF_HUB_OFFLINE = True  # every later Hub call reads the local cache instead of retrying
            if say:
                say_offline()
    return _STATE["why"]


def _probe() -> str | None:
    from huggingface_hub.utils import get_session

    try:  # any answer, even an error status, means the Hub is there
        get_session().head(constants.ENDPOINT, timeout=constants.HF_HUB_ETAG_TIMEOUT, follow_redirects=False)
    except Exception as e:  # noqa: BLE001 - DNS failure, refused, timed out, TLS, proxy: all "cannot reach"
        return f"{constants.ENDPOINT}: {_first_line(e)}"
    return None


def notice() -> str:
    """What we say, once, when models load from the cache because the Hub is offline or unreachable."""
    why = _STATE.get("why")
    if offline_by_setting():
        state = "offline (HF_HUB_OFFLINE=1)"
    else:
        state = f"cannot be reached ({why})" if why else "cannot be reached"
    cache = constants.HF_HUB_CACHE
    return f"Hugging Face Hub {state}: models load from the local cache ({cache}), without checking for updates."


def say_offline() -> None:
    text = notice()
    if text not in SAID:
        SAID.add(text)
        print(text)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]

"""The smoke switch only shrinks work, and only when it is on."""

from helpers import smoke


def test_off_changes_nothing(monkeypatch):
    monkeypatch.delenv(smoke.ENV, raising=False)
    assert smoke.shrink(steps=30, size=1024, seeds=[1, 2, 3]) == (30, 1024, [1, 2, 3])
    assert smoke.shrink(steps=None) is None


def test_on_shrinks_steps_sizes_and_counts(monkeypatch):
    monkeypatch.setenv(smoke.ENV, "1")
    assert smoke.shrink(steps=30, size=1024, seeds=[1, 2, 3], num_images=4) == (4, 64, [1, 2], 2)
    assert smoke.shrink(steps=1) == 1, "never grows work"
    assert smoke.shrink(repeats=3) == 2, "a benchmark's timed repeats are a count"
    assert smoke.shrink(sizes=["1024x768", "512x512", "768x768"]) == ["80x64", "64x64"]
    assert smoke.shrink(models=["sd15", "sdxl-turbo", "flux-schnell"], prompt="a fox") == (
        ["sd15", "sdxl-turbo"],
        "a fox",
    )


def test_cap_only_shrinks_and_only_when_on(monkeypatch):
    monkeypatch.delenv(smoke.ENV, raising=False)
    assert smoke.cap(1000, 300) == 1000
    monkeypatch.setenv(smoke.ENV, "1")
    assert (smoke.cap(1000, 300), smoke.cap(100, 300)) == (300, 100), "never grows work"

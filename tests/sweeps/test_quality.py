"""Quantized plans against full precision, scored by the zoo's judges on the tiny stand-ins."""

import pytest


def test_quality_scores_quantized_plans_against_full_precision_with_the_judges(fresh_hub, tmp_path):
    from helpers.sweeps.quality import quality

    r = quality("flux-dev", ["gguf-q8_0", "gguf-q4_k_s"], ["a red fox"], seeds=[1, 2], device="cpu",
                num_inference_steps=2, height=64, width=64, out=tmp_path)  # fmt: skip
    t = r.table
    assert list(t.index) == ["full", "gguf-q8_0", "gguf-q4_k_s"] and (t["images"] == 2).all()
    sim, pix = t["DINO similarity to full"], t["pixel difference to full"]
    assert sim["full"] == pytest.approx(1.0) and pix["full"] == 0
    assert 0 < pix["gguf-q8_0"] < pix["gguf-q4_k_s"]  # fewer bits, further from full precision
    assert sim["gguf-q4_k_s"] <= sim["gguf-q8_0"] + 1e-6
    assert t["CLIP score"].notna().all() and t["PickScore"].notna().all()
    assert (tmp_path / "quality-flux-dev.csv").exists()
    assert "| gguf-q4_k_s |" in (tmp_path / "quality-flux-dev.md").read_text()
    assert r.grid.size[0] > 2 * 64

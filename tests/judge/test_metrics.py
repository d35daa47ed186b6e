"""The metric arithmetic against independent references, and the metrics on the offline hub's tiny judges."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from helpers.base.errors import ZooError
from helpers.judge import metricmath, metrics
from helpers.zoo.registry import default as registry_default


def _features(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + shift


def _frechet_by_hand(a, b):
    """The Fréchet formula written out with scipy's sqrtm, as pytorch-fid does."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)


# --- arithmetic ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sqrtm", "samples"])
def test_frechet_distance_equals_the_formula_computed_directly(method):
    a, b = _features(300, 16, 0), _features(200, 16, 1, shift=0.5)
    assert metricmath.frechet_distance(a, b, method) == pytest.approx(_frechet_by_hand(a, b), rel=1e-8)


@pytest.mark.parametrize("n, d", [(300, 16), (12, 64)])  # more images than dimensions, and fewer (the FID case)
def test_frechet_distance_of_a_set_to_itself_is_zero_and_it_is_symmetric(n, d):
    a, b = _features(n, d, 2), _features(n + 5, d, 3, shift=1.0)
    assert metricmath.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert metricmath.frechet_distance(a, b) == pytest.approx(metricmath.frechet_distance(b, a), rel=1e-9)


def test_kid_is_the_mean_of_a_direct_unbiased_mmd_over_subsets():
    a, b = _features(40, 8, 4), _features(40, 8, 5, shift=0.3)
    d = a.shape[1]

    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731 - the kernel of Bińkowski et al., written out
    m, n = len(a), len(b)
    mmd = (k(a, a).sum() - np.trace(k(a, a))) / (m * (m - 1))
    mmd += (k(b, b).sum() - np.trace(k(b, b))) / (n * (n - 1)) - 2 * k(a, b).mean()
    assert metricmath.polynomial_mmd(a, b) == pytest.approx(mmd, rel=1e-10)
    mean, std = metricmath.kid(a, b, subsets=1, subset_size=1000, seed=3)  # one subset: half of each set
    rng = np.random.default_rng(3)
    half = a[rng.choice(40, 20, replace=False)], b[rng.choice(40, 20, replace=False)]
    assert mean == pytest.approx(metricmath.polynomial_mmd(*half), rel=1e-10)
    assert metricmath.kid(a, b, subset_size=10)[1] > 0  # random subsets: a spread, reported


def test_kid_subsets_are_smaller_than_the_sets_so_its_std_measures_a_spread():
    a, b = _features(40, 8, 4), _features(40, 8, 5, shift=0.3)
    assert metricmath.kid_subset_size(40, 40, 1000) == 20 and metricmath.kid_subset_size(5000, 3000, 1000) == 1000
    _, std = metricmath.kid(a, b, subset_size=1000)  # the default, with sets far below it (README, notebook 10)
    spread = [metricmath.polynomial_mmd(a[i : i + 20], b[i : i + 20]) for i in (0, 10, 20)]
    assert std > 0.1 * np.std(spread)  # subsets as large as the sets were all the same set: std 0
    with pytest.raises(ValueError, match="KID needs at least 4 images in each set"):
        metricmath.kid(a[:3], b)


def test_inception_score_of_uniform_predictions_is_one_and_of_confident_distinct_ones_is_the_class_count():
    assert metricmath.inception_score(np.full((50, 1008), 1 / 1008)) == pytest.approx((1.0, 0.0))
    one_hot = np.eye(10)[np.arange(100) % 10]
    assert metricmath.inception_score(one_hot, splits=1)[0] == pytest.approx(10, rel=1e-6)


def test_clip_score_clamps_negative_cosines_at_zero():
    image, text = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert metricmath.clip_score_from_embeddings(image, text) == pytest.approx([100, 100 / np.sqrt(2), 0])


# --- the judges, on the offline hub ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(offline_hub_dir):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(4)]


def test_clip_score_equals_a_hand_computation_from_the_models_own_embeddings(images):
    prompts = ["a red fox", "a castle at night", "portrait of a woman", "a dragon"]
    scores = metrics.clip_score(images, prompts)
    judge = metrics.judge("clip-vit-l-14")
    inputs = judge.processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = judge.model(**inputs)  # CLIPModel's own forward: normalised image and text embeddings
    cos = (out.image_embeds * out.text_embeds).sum(-1).double().numpy()
    assert scores == pytest.approx((100 * np.maximum(cos, 0)).tolist(), abs=1e-4)
    emb_cos = metricmath.row_cosines(metrics.image_embeddings(judge, images), metrics.text_embeddings(judge, prompts))
    assert emb_cos == pytest.approx(cos, abs=1e-5)  # the raw cosines too, not only the clamped scores


def test_a_prompt_past_77_tokens_is_truncated_with_a_warning(images):
    long = "a watercolor painting of a red fox " * 20
    with pytest.warns(UserWarning, match="reads 77 tokens"):
        score = metrics.clip_score(images[:1], long)
    tokenizer = metrics.judge("clip-vit-l-14").processor.tokenizer
    cut = tokenizer(long, truncation=True, max_length=77)["input_ids"]
    kept = tokenizer.decode(cut, skip_special_tokens=True)
    assert len(cut) == 77 and score == pytest.approx(metrics.clip_score(images[:1], kept), abs=1e-4)


def test_image_similarity_is_one_against_itself_and_clip_i_works_too(images):
    assert metrics.image_similarity(images[:1], images[:1]) == pytest.approx([1.0], abs=1e-5)
    both = metrics.image_similarity(images, images[:2], evaluator="clip-vit-l-14")
    other = metrics.image_similarity(images[:1], images[1:2], evaluator="clip-vit-l-14")[0]
    assert len(both) == 4 and both[0] == pytest.approx((1 + other) / 2, abs=1e-5)  # the mean over the references


def test_preference_score_is_logit_scale_times_cosine(images):
    scores = metrics.preference_score(images, "a red fox")
    judge = metrics.judge("pickscore")
    inputs = judge.processor(text=["a red fox"], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = judge.model(**inputs).logits_per_image[:, 0]  # = logit_scale.exp() * cos, CLIP's own
    assert scores == pytest.approx(logits.double().tolist(), abs=1e-4)


def test_set_metrics_carry_how_they_were_made_and_warn_on_small_sets(images):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flipped = [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images]
        out = metrics.set_scores(images, flipped, ["fid", "kid", "is", "fd-dinov2"], subsets=10)
    assert any("FID from 4 images is biased upwards" in str(w.message) for w in caught)
    fid = out["fid"]
    assert (fid.n, fid.n_reference) == (4, 4) and fid.value > 0 and "clean-fid" in fid.resize
    assert "pt_inception-2015-12-05" in fid.extractor and fid.warning and fid.std is None
    assert out["kid"].std > 0 and "10 random subsets of 2 images" in out["kid"].implementation
    assert out["is"].value == pytest.approx(1, abs=0.1)  # a random net: unsure
    assert out["fd-dinov2"].value > 0 and "dinov2-base" in out["fd-dinov2"].extractor


def test_scoring_errors_say_what_to_give(images, tmp_path):
    with pytest.raises(ZooError, match="give reference images"):
        metrics.score(images, metrics=["fid"])
    with pytest.raises(ZooError, match="give prompts"):
        metrics.score(images, metrics=["clip"])
    with pytest.raises(ZooError, match="4 images but 2 prompts"):
        metrics.clip_score(images, ["a", "b"])
    with pytest.raises(ZooError, match="unknown metric"):
        metrics.score(images, ["x"], metrics=["fidd"])
    with pytest.raises(ZooError, match="no images \\(PNG, JPEG or WebP\\) in this folder"):
        metrics.image_similarity(images, tmp_path)
    images[0].save(tmp_path / "ref.png")
    assert metrics.image_similarity(images[:1], tmp_path) == pytest.approx([1.0], abs=1e-5)  # a folder of references
    with pytest.raises(ZooError, match="Unknown evaluator 'clip-vit-l14'. Did you mean 'clip-vit-l-14'"):
        metrics.clip_score(images, "a fox", evaluator="clip-vit-l14")


def test_the_fid_resize_is_pil_bicubic_with_antialiasing_and_differs_from_bilinear():
    from helpers.judge import inception

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (512, 384, 3), dtype=np.uint8))
    smooth = image.resize((12, 16)).resize((384, 512), Image.BILINEAR)  # no overshoot for uint8 PIL to clip
    direct = np.asarray(smooth.resize((299, 299), Image.BICUBIC), np.float64)
    assert np.abs(inception.clean_resize(smooth) - direct).max() <= 1  # the same filter, up to uint8 rounding
    clean = inception.clean_resize(image)
    assert clean.shape == (299, 299, 3)
    bilinear = inception.to_batch([image], "bilinear")[0].permute(1, 2, 0).numpy() * 128 + 128
    assert np.abs(bilinear - clean).mean() > 10  # no antialiasing: noise aliases instead of averaging out
    grey = inception.to_batch([Image.new("RGB", (64, 64), (128, 0, 255))])  # TF's scaling: (x - 128) / 128
    assert grey[0, :, 100, 100].tolist() == pytest.approx([0, -1, 127 / 128], abs=1e-6)


def test_the_fid_network_gives_torch_fidelitys_features_on_the_same_random_weights(tmp_path):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    from helpers.judge import inception

    torch.manual_seed(0)
    random = inception.FIDInceptionV3()
    with torch.no_grad():  # BatchNorm statistics too, so that a swapped or skipped normalisation shows
        for bn in (m for m in random.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1), bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.1, 0.1)
    torch.save(random.state_dict(), tmp_path / "random.pth")
    ours = inception.load_weights(inception.FIDInceptionV3(), torch.load(tmp_path / "random.pth"))
    theirs = FeatureExtractorInceptionV3(  # loads the file strictly: every key and shape the same
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(tmp_path / "random.pth")
    )
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
    uint8 = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        features, logits = theirs(uint8)
        # The tensor torch-fidelity's forward makes (its TF-1 bilinear resize is the identity at 299 px) gives
        # torch-fidelity's pool3 features and unbiased logits bit for bit.
        same_input = interpolate_bilinear_2d_like_tensorflow1x(uint8.float(), size=(299, 299), align_corners=False)
        same_input = (same_input - 128) / 128
        assert torch.equal(inception.to_batch([Image.fromarray(p) for p in pixels]), same_input)
        pool, unbiased = ours(same_input)
        assert torch.equal(pool, features) and torch.equal(unbiased, logits)
        # From our own batch (the same values, another memory layout) the CPU convolutions round differently.
        mine = ours(inception.to_batch([Image.fromarray(p) for p in pixels]))
    torch.testing.assert_close(mine[0], features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mine[1], logits, rtol=1e-5, atol=1e-6)
    assert features.abs().mean() > 1e-3 and logits.std() > 1e-3, "the comparison is of numbers, not of zeros"


@pytest.mark.parametrize("key", list(registry_default().evaluators))
def test_every_evaluator_stands_in_the_offline_hub_at_its_pinned_revision(offline_hub_dir, key):
    from huggingface_hub import try_to_load_from_cache

    spec = registry_default().evaluator(key)
    if spec.repo:
        assert isinstance(try_to_load_from_cache(spec.repo, "config.json", revision=spec.revision), str)
    j = metrics.judge(key)
    assert j.spec is spec and not j.model.training


def test_a_reference_computes_its_features_once_for_every_set(images):
    ref = metrics.Reference(images[2:])  # FD-DINOv2 here: the tiny DINOv2 is faster than the full-size Inception
    first = metrics.set_scores(images[:2], ref, ["fd-dinov2"])["fd-dinov2"]
    features = ref.features["dinov2"]
    second = metrics.set_scores(images[1:3], ref, ["fd-dinov2"])["fd-dinov2"]
    assert ref.features["dinov2"] is features and second.value != first.value and second.n_reference == 2

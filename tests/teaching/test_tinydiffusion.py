"""A diffusion model trained from scratch: the equations against the papers and diffusers, and what training buys.

One class-conditional model (cosine schedule, learned variances, label dropout) is trained once per session for a
fixed small budget from a fixed seed; the tests read its losses, samples and likelihood.
"""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from helpers.teaching import digits
from helpers.teaching import tinydiffusion as TD

STEPS = 300  # training steps of the shared model: about 35 s on one core


@pytest.fixture(scope="module")
def data():
    return digits.load()


@pytest.fixture(scope="module")
def judge(data):
    return digits.classifier(data)


@pytest.fixture(scope="module")
def trained(data):
    return TD.train(data, "cosine", learned_variance=True, conditional=True, steps=STEPS, seed=0,
                    snapshot_every=STEPS // 2)  # fmt: skip


def test_cosine_schedule_is_the_papers_formula():
    ab = TD.cosine_schedule()
    s, steps = 0.008, 1000
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
    paper = torch.tensor([f(t + 1) / f(0) for t in range(steps)], dtype=torch.float64)  # the paper counts from 1
    capped = (1 - paper[1:] / paper[:-1] > 0.999).nonzero()[0].item()  # where the beta cap starts to bite
    assert capped > 990
    torch.testing.assert_close(ab[: capped + 1], paper[: capped + 1], rtol=1e-12, atol=0)
    assert ab[0] > 0.9999 and ab[499] == pytest.approx(f(500) / f(0)) and ab[-1] < 1e-8


def test_schedules_are_diffusers():
    cosine = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod
    torch.testing.assert_close(TD.cosine_schedule().float(), cosine, rtol=1e-5, atol=1e-7)
    linear = DDPMScheduler(beta_schedule="linear").alphas_cumprod
    torch.testing.assert_close(TD.linear_schedule().float(), linear, rtol=1e-5, atol=1e-7)


def test_q_sample_is_diffusers_add_noise():
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 9, 500, 999])
    torch.testing.assert_close(TD.q_sample(x0, t, TD.cosine_schedule(), noise), scheduler.add_noise(x0, noise, t))


@pytest.mark.parametrize("variance_type", ["fixed_small", "learned_range"])
def test_ddpm_step_is_diffusers_on_respaced_steps(variance_type):
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type=variance_type, clip_sample=False)
    timesteps = TD.respace(scheduler.alphas_cumprod, 10)
    scheduler.set_timesteps(timesteps=timesteps.tolist())
    g = torch.Generator().manual_seed(0)
    x, eps, v = (torch.randn(2, 1, 8, 8, generator=g) for _ in range(3))
    ab = scheduler.alphas_cumprod
    for t, t_prev in ((timesteps[0], timesteps[1]), (timesteps[5], timesteps[6])):
        out = torch.cat([eps, v], dim=1) if variance_type == "learned_range" else eps
        expected = scheduler.step(out, int(t), x, generator=torch.Generator().manual_seed(1)).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        learned = v if variance_type == "learned_range" else None
        ours = TD.ddpm_step(eps, learned, x, ab[t], ab[t_prev], noise, clip=False)
        torch.testing.assert_close(ours, expected)


def test_ddim_step_is_diffusers():
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    t, t_prev = scheduler.timesteps[2], scheduler.timesteps[3]
    ab = scheduler.alphas_cumprod
    expected = scheduler.step(eps, t, x).prev_sample
    torch.testing.assert_close(TD.ddim_step(eps, x, ab[t], ab[t_prev], clip=False), expected)


def test_vlb_terms_vanish_for_a_model_that_knows_the_noise(data):
    model = TD.Denoiser("linear")
    x0 = data.test_x[:8]
    t, noise = torch.tensor([1, 2, 10, 100, 400, 700, 998, 999]), torch.randn(8, 1, 8, 8)
    x_t = TD.q_sample(x0, t, model.alpha_bar, noise)
    kl = TD.vlb_term(model, x0, t, x_t, noise, None)  # the true noise and the true posterior variance
    torch.testing.assert_close(kl, torch.zeros(8), rtol=0, atol=1e-3)
    wrong = TD.vlb_term(model, x0, t, x_t, noise + 0.1, None)
    assert (wrong > 1e-3).all()


def test_training_lowers_the_loss(trained):
    first, last = trained.losses[:30], trained.losses[-30:]
    assert len(trained.losses) == STEPS and sum(last) / 30 < 0.6 * sum(first) / 30
    assert sorted(trained.snapshots) == [STEPS // 2, STEPS] and trained.snapshots[STEPS].shape == (20, 1, 8, 8)


def test_samples_are_recognised_far_above_chance(trained, judge):
    labels = torch.arange(100) % 10
    x = TD.sample(trained.model, labels, steps=25, seed=1)
    assert x.shape == (100, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert digits.accuracy(judge, x, labels) > 0.6  # chance: 0.1


def test_guidance_raises_the_accuracy(trained, judge):
    labels = torch.arange(100) % 10
    unguided = TD.sample(trained.model, labels, steps=25, seed=2)
    guided = TD.sample(trained.model, labels, steps=25, seed=2, guidance_scale=3.0)
    assert digits.accuracy(judge, guided, labels) > digits.accuracy(judge, unguided, labels) + 0.05
    assert digits.confidence(judge, guided, labels) > digits.confidence(judge, unguided, labels) + 0.1
    unconditional = TD.sample(trained.model, None, n=100, steps=25, seed=2)  # label dropped: any digit
    assert digits.accuracy(judge, unconditional, labels) < 0.3


def test_learned_variances_lower_the_likelihood_bound(trained, data):
    learned = TD.nll(trained.model, data.test_x[:120], timesteps=20)
    fixed = TD.nll(trained.model, data.test_x[:120], timesteps=20, learned=False)
    assert learned < fixed - 0.1


def test_sampling_is_reproducible_from_its_seed(trained):
    a = TD.sample(trained.model, torch.arange(4), steps=5, seed=7, method="ddim")
    b = TD.sample(trained.model, torch.arange(4), steps=5, seed=7, method="ddim")
    assert torch.equal(a, b) and not torch.equal(a, TD.sample(trained.model, torch.arange(4), steps=5, seed=8))


def test_the_digits_judge_and_likelihood(data, judge):
    assert digits.accuracy(judge, data.test_x, data.test_y) > 0.97
    noise = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert digits.accuracy(judge, noise, torch.arange(200) % 10) < 0.25
    levels = torch.linspace(-1, 1, digits.LEVELS)
    mass = torch.exp(-digits.discretized_gaussian_nll(levels, torch.tensor(0.3), torch.tensor(-2.0)))
    assert mass.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert digits.digit_score(judge, data.test_x) > 7 > 1.5 > digits.digit_score(judge, data.test_x[data.test_y == 3])


def test_spread_measures_how_alike_the_images_of_a_label_are(data):
    x, y = data.test_x[:100], data.test_y[:100]
    assert digits.spread(x, y) > 2 * digits.spread(x * 0.1, y) > 0
    assert math.isnan(digits.spread(x[:2], torch.tensor([0, 1])))

"""The diffusion schedule, forward process and samplers: closed forms and diffusers parity."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from aiforge.generative.diffusion import (
    NoiseSchedule,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    make_schedule,
    q_sample,
    sample_ddim,
    sample_ddpm,
)

KINDS = [("linear", "linear"), ("cosine", "squaredcos_cap_v2")]


@pytest.mark.parametrize(("kind", "diffusers_name"), KINDS)
def test_schedule_matches_diffusers(kind, diffusers_name):
    ours = make_schedule(kind, 1000)
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name)
    torch.testing.assert_close(ours.betas, theirs.betas, rtol=0, atol=1e-7)
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod, rtol=0, atol=1e-7)


def test_cosine_schedule_follows_its_alpha_bar_formula():
    sched = make_schedule("cosine", 1000)
    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    for t in (0, 10, 500, 900):  # abar_t = f((t+1)/T) / f(0) away from the beta clip
        assert sched.alphas_cumprod[t].item() == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-4)


def test_q_sample_matches_its_closed_form():
    sched = make_schedule("linear", 1000)
    x0, noise = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 10, 500, 999])
    abar = torch.cumprod(1 - sched.betas.double(), 0)[t].view(4, 1, 1, 1)  # prod_s (1 - beta_s)
    expected = abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()
    torch.testing.assert_close(q_sample(sched, x0, t, noise).double(), expected, rtol=1e-5, atol=1e-5)


def test_q_sample_has_the_forward_marginal_mean_and_variance():
    sched = make_schedule("cosine", 1000)
    t, n = 300, 200_000
    x0 = torch.full((n,), 0.8)
    x_t = q_sample(sched, x0, torch.full((n,), t), torch.randn(n, generator=torch.Generator().manual_seed(0)))
    abar = sched.alphas_cumprod[t].item()
    assert x_t.mean().item() == pytest.approx(math.sqrt(abar) * 0.8, abs=0.01)
    assert x_t.var().item() == pytest.approx(1 - abar, rel=0.02)


@pytest.mark.parametrize(("kind", "diffusers_name"), KINDS)
@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_ddpm_step_matches_diffusers(kind, diffusers_name, t):
    ours = make_schedule(kind, 1000)
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name)
    x, eps = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    expected = theirs.step(eps, t, x, generator=torch.Generator().manual_seed(3)).prev_sample
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))  # the same draw
    torch.testing.assert_close(ddpm_step(ours, eps, t, x, noise), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("kind", "diffusers_name"), KINDS)
@pytest.mark.parametrize("t", [980, 500, 0])
@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim_step_matches_diffusers(kind, diffusers_name, t, eta):
    ours = make_schedule(kind, 1000)
    theirs = DDIMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name)
    theirs.set_timesteps(50)
    x, eps = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    expected = theirs.step(eps, t, x, eta=eta, generator=torch.Generator().manual_seed(5)).prev_sample
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ddim_step(ours, eps, t, t - 20, x, eta, noise), expected,
                               rtol=1e-5, atol=1e-6)


def test_ddim_timesteps_match_diffusers_leading_spacing():
    theirs = DDIMScheduler(num_train_timesteps=1000)
    for k in (10, 50, 333):
        theirs.set_timesteps(k)
        assert ddim_timesteps(1000, k) == theirs.timesteps.tolist()
    with pytest.raises(ValueError, match="sample steps"):
        ddim_timesteps(100, 101)


def _toy_eps(x, t):  # a deterministic stand-in for a network
    return 0.3 * x + 1e-3 * t.float().view(-1, 1, 1, 1)


def test_whole_ddim_sampler_matches_a_diffusers_loop():
    sched = make_schedule("cosine", 1000)
    ours = sample_ddim(_toy_eps, sched, (3, 1, 8, 8), 25, torch.Generator().manual_seed(7))
    theirs = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    theirs.set_timesteps(25)
    x = torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(7))
    for t in theirs.timesteps:
        x = theirs.step(_toy_eps(x, torch.full((3,), int(t))), t, x).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampling_is_deterministic_given_a_seed(sampler):
    sched = NoiseSchedule(make_schedule("linear", 100).betas)
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        if sampler == "ddpm":
            return sample_ddpm(_toy_eps, sched, (2, 1, 8, 8), g)
        return sample_ddim(_toy_eps, sched, (2, 1, 8, 8), 10, g, eta=0.5)
    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))

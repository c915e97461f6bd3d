"""The VAE: ELBO terms against hand-computed cases, learning, bounds, save/load."""

import math

import pytest
import torch

from aiforge.core import load_model, run_recipe
from aiforge.generative import vae
from aiforge.generative.data import LEVELS, dequantize


def test_kl_matches_a_hand_computed_case():
    # mu = (1, 0), sigma^2 = (1, 2): KL = 1/2 [(1 + 1 - 1 - 0) + (0 + 2 - 1 - log 2)] = 1 - log(2)/2
    kl = vae.kl_to_standard_normal(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]]))
    assert kl.item() == pytest.approx(1 - math.log(2) / 2, rel=1e-6)


def test_kl_matches_torch_distributions():
    mu, log_var = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    torch.testing.assert_close(vae.kl_to_standard_normal(mu, log_var), expected)


def test_gaussian_log_density_matches_a_hand_computed_case():
    # x = (0.5, 1), mean 0, variance (1, e^2): -1/2 [2 log 2pi + 0 + 0.25 + 2 + 1/e^2]
    got = vae.gaussian_log_density(torch.tensor([[0.5, 1.0]]), torch.zeros(1, 2), torch.tensor([[0.0, 2.0]]))
    expected = -0.5 * (2 * math.log(2 * math.pi) + 0.25 + 2.0 + math.exp(-2.0))
    assert got.item() == pytest.approx(expected, rel=1e-6)


class _FixedVAE(vae.ConvVAE):
    """q(z|x) = N(0.5, 0.25) for every x; p(x|z) = N(z, 1) per pixel: an ELBO one can do by hand."""

    def encode(self, x):
        return torch.full((len(x), 1), 0.5), torch.full((len(x), 1), math.log(0.25))

    def decode(self, z):
        return z.view(-1, 1, 1, 1).expand(-1, 1, 8, 8), torch.zeros(len(z), 1, 8, 8)


def test_negative_elbo_matches_a_hand_computed_case():
    model = _FixedVAE(latent_dim=1)
    x = torch.full((1, 1, 8, 8), 0.2)
    torch.manual_seed(0)
    got = vae.negative_elbo(model, x).item()
    torch.manual_seed(0)
    z = 0.5 + 0.5 * torch.randn(1, 1).item()                       # the same reparameterised draw
    log_px = 64 * (-0.5 * (math.log(2 * math.pi) + (0.2 - z) ** 2))
    kl = 0.5 * (0.25 + 0.25 - 1 - math.log(0.25))
    assert got == pytest.approx(kl - log_px + 64 * math.log(LEVELS), rel=1e-6)


def test_dequantized_images_stay_in_their_grey_level_bins():
    x = torch.arange(17).float().view(1, 1, 1, 17) / 16
    deq = dequantize(x, torch.Generator().manual_seed(0))
    assert torch.equal(torch.floor(deq * LEVELS), torch.arange(17).float().view(1, 1, 1, 17))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    return out, run_recipe("generative.vae", quick=True, out=out, quiet=True, track=False)


def test_quick_vae_beats_probabilistic_pca_and_writes_its_figures(quick_run):
    out, result = quick_run
    m = result.metrics
    assert result.passed and m["test_nelbo"] < m["ppca_test_nll"]
    assert m["test_nll_iw"] <= m["test_nelbo"] + 0.5      # the IW bound is at least as tight
    for name in ("reconstructions", "samples", "latent_traversal", "latent_map"):
        assert (out / "figures" / f"{name}.png").is_file()


def test_saved_vae_reloads_to_the_same_likelihood(quick_run):
    out, result = quick_run
    model = load_model(out)
    from aiforge.data.digits import digits_splits
    from aiforge.generative.data import dequantized_test

    test_x = dequantized_test(digits_splits()["test"])
    torch.manual_seed(0)
    nelbo = vae.mean_negative_elbo(model, test_x, 10)
    assert nelbo == pytest.approx(result.metrics["test_nelbo"], abs=1.0)  # new z draws only

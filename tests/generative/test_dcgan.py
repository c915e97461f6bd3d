"""DCGAN: losses against hand values, conditioning, resume to the same weights, quick bar."""

import math
import shutil

import pytest
import torch

from aiforge.core import RunContext, load_model, run_recipe
from aiforge.core.seeding import seed_everything
from aiforge.generative import dcgan


def test_gan_losses_match_hand_values_at_an_undecided_discriminator():
    zeros = torch.zeros(4)
    assert dcgan.discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert dcgan.generator_loss(zeros).item() == pytest.approx(math.log(2))
    # a confident, correct discriminator: real logit +5, fake logit -5
    d = dcgan.discriminator_loss(torch.full((4,), 5.0), torch.full((4,), -5.0)).item()
    assert d == pytest.approx(2 * math.log1p(math.exp(-5.0)), rel=1e-5)


def test_generator_shapes_range_and_conditioning():
    g = dcgan.Generator(latent_dim=8, width=16).eval()
    z = torch.randn(3, 8)
    out = g(z, torch.tensor([0, 1, 2]))
    assert out.shape == (3, 1, 8, 8) and out.abs().max() <= 1
    assert not torch.allclose(out, g(z, torch.tensor([5, 5, 5])))
    with pytest.raises(ValueError, match="needs labels"):
        g(z)


def test_projection_discriminator_depends_on_the_label_only_when_conditional():
    x = torch.randn(2, 1, 8, 8)
    cond, plain = dcgan.Discriminator(16, True).eval(), dcgan.Discriminator(16, False).eval()
    assert not torch.allclose(cond(x, torch.tensor([0, 0])), cond(x, torch.tensor([3, 3])))
    assert torch.equal(plain(x, torch.tensor([0, 0])), plain(x, torch.tensor([3, 3])))


def _train(cfg, out, resume=False):
    seed_everything(cfg.seed, 1)
    ctx = RunContext(recipe="generative.dcgan", out=out, config=cfg, quiet=True, resume=resume)
    dcgan.train(cfg, ctx)
    return load_model(out)


def test_resuming_from_a_checkpoint_gives_the_same_generator(tmp_path):
    cfg = dcgan.DCGANConfig(steps=200, checkpoint_every=100, width=8, latent_dim=8, n_generate=178)
    straight = _train(cfg, tmp_path / "a")
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-000100", tmp_path / "b" / "checkpoints" / "step-000100")
    resumed = _train(cfg, tmp_path / "b", resume=True)
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_quick_dcgan_clears_its_bar_with_every_class(tmp_path):
    result = run_recipe("generative.dcgan", quick=True, out=tmp_path, quiet=True, track=False)
    m = result.metrics
    assert result.passed and m["classes_covered"] == 10 and m["digits_fd"] < m["fd_ceiling"]
    model = load_model(tmp_path)
    labels = torch.arange(10)
    a = dcgan.generate(model, 10, labels=labels, generator=torch.Generator().manual_seed(0))
    b = dcgan.generate(model, 10, labels=labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_32x32_networks_are_the_deeper_dcgan_and_a_few_steps_train(tmp_path):
    """Colour 32x32: G grows 4 -> 8 -> 16 -> 32, D's projection features stay 4 * width, and
    the mode-seeking loop runs; the 8x8 digits keep their two-stage networks."""
    g = dcgan.Generator(8, 8, channels=3, size=32, classes=4)
    d = dcgan.Discriminator(8, channels=3, size=32, classes=4)
    assert g.net[1].unflattened_size == (32, 4, 4) and d.label_emb.weight.shape == (4, 32)
    images = g(torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1]))
    assert images.shape == (6, 3, 32, 32) and d(images, torch.zeros(6, dtype=torch.long)).shape == (6,)
    assert not dcgan.deep(8) and dcgan.Generator(8, 8).net[1].unflattened_size == (32, 2, 2)
    cfg = dcgan.DCGANConfig(dataset="shapes", steps=3, width=8, latent_dim=8, n_generate=400)
    assert dcgan.mode_seeking_weight(cfg) == 1.0
    assert dcgan.mode_seeking_weight(dcgan.DCGANConfig()) == 0.0
    model = _train(cfg, tmp_path)
    sample = dcgan.generate(model, 4, labels=torch.arange(4), generator=torch.Generator().manual_seed(0))
    assert sample.shape == (4, 3, 32, 32)

"""StyleGAN: modulation and demodulation, style mixing, truncation, R1, the quick recipe and
seeded sampling after reload."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from aiforge.cli import app
from aiforge.core import load_model, run_recipe
from aiforge.generative import stylegan as S


def test_demodulated_conv_keeps_unit_variance_for_unit_variance_input():
    torch.manual_seed(0)
    conv = S.ModulatedConv2d(64, 32, 3, w_dim=16)
    nn.init.normal_(conv.affine.weight)            # styles far from 1, differing per channel
    x = torch.randn(16, 64, 12, 12)
    out = conv(x, torch.randn(16, 16))[:, :, 1:-1, 1:-1]   # away from the zero padding
    per_map = out.var((0, 2, 3))                    # (32,) every output channel, not only on average
    assert out.var().item() == pytest.approx(1.0, abs=0.05)
    assert per_map.min() > 0.85 and per_map.max() < 1.15
    plain = S.ModulatedConv2d(64, 32, 3, w_dim=16, demodulate=False)
    nn.init.normal_(plain.affine.weight)
    assert plain(x, 3 * torch.randn(16, 16)).var().item() > 2  # without demodulation it is not


def test_modulated_conv_equals_a_plain_conv_with_the_hand_scaled_weight():
    torch.manual_seed(1)
    conv = S.ModulatedConv2d(4, 3, 3, w_dim=5)
    nn.init.normal_(conv.affine.weight)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(2, 5)
    out = conv(x, w)
    for i in range(2):
        s = conv.affine(w[i])                                        # (4,)
        weight = conv.scale * conv.weight * s[None, :, None, None]   # (3, 4, 3, 3)
        weight = weight / weight.pow(2).sum((1, 2, 3), keepdim=True).add(1e-8).sqrt()
        torch.testing.assert_close(out[i:i + 1], F.conv2d(x[i:i + 1], weight, padding=1))


def test_style_mixing_takes_coarse_layers_from_the_first_w_and_fine_from_the_second():
    ws1, ws2 = torch.zeros(3, S.NUM_WS, 2), torch.ones(3, S.NUM_WS, 2)
    mixed = S.mix_styles(ws1, ws2, torch.tensor([1, 2, 4]))
    assert mixed[:, :, 0].tolist() == [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]


def test_truncation_moves_w_towards_w_avg():
    g = S.StyleGenerator(w_dim=8, width=8)
    g.w_avg.fill_(0.5)
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(g.ws(z, y, psi=0.0), torch.full((4, S.NUM_WS, 8), 0.5))
    w1 = g.ws(z, y, psi=1.0)
    torch.testing.assert_close(g.ws(z, y, psi=0.5), 0.5 + 0.5 * (w1 - 0.5))


def test_r1_penalty_is_the_squared_input_gradient_norm():
    class Linear(nn.Module):
        def forward(self, x, y):
            return (x * torch.arange(64.0).view(1, 1, 8, 8)).sum((1, 2, 3))

    x = torch.randn(5, 1, 8, 8)
    expected = torch.arange(64.0).pow(2).sum()
    assert S.r1_penalty(Linear(), x, torch.zeros(5, dtype=torch.long)).item() == pytest.approx(expected.item())


def test_noise_inputs_change_the_image_and_generate_is_seeded():
    g = S.StyleGenerator(w_dim=8, width=8).eval()
    with torch.no_grad():
        g.layers[2].noise_strength.fill_(1.0)
    ws = g.ws(torch.randn(2, 8), torch.tensor([1, 2]))
    with torch.no_grad():
        assert not torch.allclose(g.synthesis(ws), g.synthesis(ws))  # fresh noise each call
    labels = torch.arange(4)
    a = S.generate(g, labels, generator=torch.Generator().manual_seed(3))
    b = S.generate(g, labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stylegan")
    return out, run_recipe("generative.stylegan", quick=True, out=out, quiet=True, track=False)


def test_quick_stylegan_clears_its_bar_and_reloads(quick_run):
    out, result = quick_run
    m = result.metrics
    assert result.passed and m["classes_covered"] == 10 and m["digits_fd"] < m["fd_ceiling"]
    assert (out / "figures" / "style_mixing.png").is_file()
    model = load_model(out)
    labels = torch.arange(10)
    a = S.generate(model, labels, generator=torch.Generator().manual_seed(0))
    b = S.generate(model, labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (10, 1, 8, 8)


def test_sample_command_draws_a_seeded_stylegan_grid_with_truncation(quick_run, tmp_path):
    out, _ = quick_run
    pngs = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    for png, extra in zip(pngs, (["--truncation", "0.7"], ["--truncation", "0.7"], []), strict=True):
        result = CliRunner().invoke(app, ["sample", "generative.stylegan", "--run", str(out),
                                          "--n", "20", "--class", "3", "--seed", "5",
                                          "--out", str(png), *extra])
        assert result.exit_code == 0, result.output
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pngs[0].read_bytes() == pngs[1].read_bytes()      # same seed, same grid
    assert pngs[0].read_bytes() != pngs[2].read_bytes()      # psi 0.7 differs from psi 1


@pytest.mark.parametrize(("args", "message"), [
    (["--truncation", "1.5"], "--truncation must lie in 0..1"),
    (["--steps", "10"], "has no sampler"),
    (["--class", "10"], "--class must lie in 0..9"),
])
def test_sample_command_rejects_bad_stylegan_options(quick_run, args, message):
    out, _ = quick_run
    result = CliRunner().invoke(app, ["sample", "generative.stylegan", "--run", str(out), *args])
    assert result.exit_code == 2 and message in result.output

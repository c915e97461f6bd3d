"""The UNet, the diffusion loss, guidance, the DDPM recipe and `aiforge sample`."""

import math
import shutil

import pytest
import torch
from typer.testing import CliRunner

from aiforge.cli import app
from aiforge.core import RunContext, load_model, run_recipe
from aiforge.core.checkpoint import latest_checkpoint
from aiforge.core.seeding import seed_everything
from aiforge.generative import ddpm
from aiforge.generative.diffusion import make_schedule
from aiforge.generative.unet import UNet, timestep_embedding


def test_timestep_embedding_is_sin_then_cos_of_geometric_frequencies():
    emb = timestep_embedding(torch.tensor([0, 7]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    freqs = torch.tensor([10_000 ** (-i / 4) for i in range(4)])
    torch.testing.assert_close(emb[1], torch.cat([(7 * freqs).sin(), (7 * freqs).cos()]))


def test_unet_maps_images_to_noise_of_the_same_shape_and_starts_at_zero():
    model = UNet(width=16)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 999])
    assert torch.equal(model(x, t, torch.tensor([0, 3, 10])), torch.zeros(3, 1, 8, 8))
    torch.nn.init.normal_(model.out[-1].weight)
    out = model(x, t, torch.tensor([0, 3, 10]))
    assert out.shape == x.shape and out.abs().sum() > 0
    assert not torch.allclose(out, model(x, t, torch.tensor([1, 3, 10])))  # the label matters


def test_diffusion_loss_falls_on_a_small_batch():
    torch.manual_seed(0)
    from aiforge.data.digits import digits_splits

    data = digits_splits()["train"]
    x0, y = ddpm.to_model_scale(data.x[:32]), data.y[:32]
    model, sched = UNet(width=16, dropout=0.0), make_schedule("cosine", 100)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    first = ddpm.diffusion_loss(model, sched, x0, y, 0.1, torch.Generator().manual_seed(1)).item()
    for _ in range(40):
        loss = ddpm.diffusion_loss(model, sched, x0, y, 0.1, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = ddpm.diffusion_loss(model, sched, x0, y, 0.1, torch.Generator().manual_seed(1)).item()
    assert first == pytest.approx(1.0, abs=0.1)  # eps = 0 at init: the loss is E[eps^2] = 1
    assert last < 0.6 * first


def test_guidance_interpolates_between_unconditional_and_conditional():
    torch.manual_seed(0)
    model = UNet(width=16).eval()
    torch.nn.init.normal_(model.out[-1].weight, std=0.1)
    x, t, labels = torch.randn(2, 1, 8, 8), torch.tensor([10, 10]), torch.tensor([2, 7])
    cond, uncond = model(x, t, labels), model(x, t)
    with torch.no_grad():
        torch.testing.assert_close(ddpm.guided_eps_fn(model, labels, 1.0)(x, t), cond)
        torch.testing.assert_close(ddpm.guided_eps_fn(model, labels, 0.0)(x, t), uncond)
        torch.testing.assert_close(ddpm.guided_eps_fn(model, labels, 3.0)(x, t),
                                   uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddpm")
    return out, run_recipe("generative.ddpm", quick=True, out=out, quiet=True, track=False)


def test_quick_ddpm_clears_its_bar_and_covers_every_class(quick_run):
    out, result = quick_run
    m = result.metrics
    assert result.passed and m["classes_covered"] == 10
    assert m["digits_fd"] < m["fd_ceiling"]
    assert m["label_agreement"] > 0.5        # guided samples mostly show the asked-for digit
    assert (out / "figures" / "samples_by_class.png").is_file()


def test_saved_ddpm_samples_identically_for_a_seed(quick_run):
    out, _ = quick_run
    model = load_model(out)
    sched = make_schedule("cosine", 200)
    def draw(seed):
        return ddpm.generate(model, sched, 6, labels=torch.arange(6), steps=10,
                             generator=torch.Generator().manual_seed(seed))
    a, b = draw(0), draw(0)
    assert torch.equal(a, b) and not torch.equal(a, draw(1))
    assert a.min() >= 0 and a.max() <= 1 and math.isfinite(a.sum().item())


def test_sample_command_writes_a_grid(quick_run, tmp_path):
    out, _ = quick_run
    png = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["sample", "generative.ddpm", "--run", str(out), "--n", "20",
                                      "--class", "4", "--steps", "8", "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--class", "12"], "--class must lie in 0..9"),
    (["--truncation", "0.5"], "--truncation is for generative.stylegan"),
    (["--steps", "0"], "--steps must lie in"),
    (["--n", "0"], "--n must lie in"),
    (["--out", "grid.jpg"], "must name a .png"),
])
def test_sample_command_rejects_bad_input_with_one_line(quick_run, tmp_path, args, message):
    out, _ = quick_run
    result = CliRunner().invoke(app, ["sample", "generative.ddpm", "--run", str(out), *args])
    assert result.exit_code == 2 and message in result.output


def test_sample_command_rejects_a_missing_run_and_a_wrong_recipe(quick_run, tmp_path):
    out, _ = quick_run
    missing = CliRunner().invoke(app, ["sample", "generative.ddpm", "--run", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such run" in missing.output
    wrong = CliRunner().invoke(app, ["sample", "generative.vae", "--run", str(out), "--n", "5"])
    assert wrong.exit_code == 2 and "is a run of 'generative.ddpm'" in wrong.output


def test_config_rejects_more_ddim_steps_than_timesteps():
    from aiforge.core import ConfigError, get_recipe

    with pytest.raises(ConfigError, match="exceeds timesteps"):
        get_recipe("generative.ddpm").make_config(False, 0, {"timesteps": "20", "sample_steps": "50"})


def _train_tiny(out, resume=False):
    cfg = ddpm.DDPMConfig(epochs=2, width=8, timesteps=20, sample_steps=5, n_generate=178,
                          eval_ancestral=False)
    seed_everything(cfg.seed, 1)
    ctx = RunContext(recipe="generative.ddpm", out=out, config=cfg, quiet=True, resume=resume)
    ddpm.train(cfg, ctx)
    return load_model(out)


def test_checkpoints_hold_the_average_and_a_resumed_run_saves_the_same_one(tmp_path):
    straight = _train_tiny(tmp_path / "a")
    ckpt = latest_checkpoint(tmp_path / "a" / "checkpoints")
    wrapper = ddpm.EMATrained(ddpm.build_model(ddpm.DDPMConfig(width=8)), 0.999)
    ckpt.load_weights(wrapper)
    from aiforge.data.digits import digits_splits

    steps_per_epoch = math.ceil(len(digits_splits()["train"].x) / 32)
    assert int(wrapper.ema.updates) == ckpt.step * steps_per_epoch   # one per optimiser step
    live, avg = wrapper.net.state_dict(), wrapper.ema.model.state_dict()
    assert not torch.equal(live["out.2.weight"], avg["out.2.weight"])
    for name, p in straight.state_dict().items():                 # the saved model is the average
        assert torch.equal(p, avg[name]), name

    first = tmp_path / "a" / "checkpoints" / "step-000001"
    shutil.copytree(first, tmp_path / "b" / "checkpoints" / "step-000001")
    resumed = _train_tiny(tmp_path / "b", resume=True)
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(p, q), name

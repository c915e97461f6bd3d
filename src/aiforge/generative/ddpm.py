"""Step 3, generative models: a class-conditional denoising diffusion model (DDPM) on the
8x8 digits, sampled ancestrally (Ho et al., 2020) and with DDIM (Song et al., 2021), with
classifier-free guidance (Ho & Salimans, 2022).

Training is DDPM's algorithm 1 with the "simple" loss (eq. 14): pick t uniformly, noise the
image with the closed-form forward process, and regress the noise,

    L = E_{x0, t, eps} || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, y) ||^2,

where the label y is replaced by the "no label" token with probability `p_uncond`, so that
one network learns both eps(x_t, t, y) and eps(x_t, t). Sampling mixes the two:

    eps_guided = eps(x_t, t) + s (eps(x_t, t, y) - eps(x_t, t))        (Ho & Salimans, eq. 6)

(s = 1: plain conditional model; s > 1 trades diversity for class fidelity). Evaluation
samples with 50 DDIM steps at eta = 1, i.e. ancestral sampling on the shortened schedule:
on this small, briefly trained model the deterministic eta = 0 sampler leaves speckled
backgrounds and scores about twice the digits-FD. The schedule and the samplers live in
`generative.diffusion`, the network in `generative.unet`. `dataset=shapes` or
`dataset=imagefolder` trains on colour images (`generative.datasets`); the bars are the digits'.

Sampling, evaluation and the saved model use an exponential moving average of the weights
(DDPM appendix B; `generative.ema`), updated after every optimiser step, so that the last
steps' jitter of the weights averages out. Here the learning rate already decays to 0, which
calms the last steps by itself: on 3 seeds the average scored about the same as the plain
weights (docs/step3-generative.md), and a constant rate with the average did no better.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import Bar, Recipe, RunContext, SupervisedConfig, fit, register
from aiforge.core.plots import learning_curves
from aiforge.generative.data import class_rows, save_grid
from aiforge.generative.datasets import ImageDataConfig, load_image_set
from aiforge.generative.diffusion import (
    EpsFn,
    NoiseSchedule,
    ScheduleKind,
    make_schedule,
    q_sample,
    sample_ddim,
    sample_ddpm,
)
from aiforge.generative.ema import EMA
from aiforge.generative.evaluation import DCGAN_DIGITS_FD
from aiforge.generative.image_eval import anchor_metrics, fd_name, reference_size, score_generated
from aiforge.generative.unet import UNet


class DDPMConfig(SupervisedConfig, ImageDataConfig):
    epochs: int = Field(60, ge=1)
    """Number of passes over the training set."""
    batch_size: int = Field(32, ge=1)
    """Images per optimisation step."""
    lr: float = Field(2e-3, gt=0, le=10)
    """Peak learning rate (cosine decay to 0 after warm-up)."""
    warmup_fraction: float = Field(0.02, ge=0, lt=1)
    """Fraction of all steps spent warming the learning rate up linearly."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value; None turns clipping off."""
    timesteps: int = Field(1000, ge=10, le=4000)
    """Diffusion steps T of the forward process."""
    noise_schedule: ScheduleKind = "cosine"
    """'linear' (Ho et al.) or 'cosine' (Nichol & Dhariwal) beta schedule."""
    width: int = Field(32, ge=8, le=512)
    """Channels at 8x8; 4x4 and 2x2 have twice as many."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout inside the residual blocks."""
    ema_decay: float = Field(0.999, ge=0, lt=1)
    """Decay of the moving average of the weights used to sample (warmed up as
    min(decay, (1+n)/(10+n)) after n steps); 0 samples with the trained weights themselves."""
    p_uncond: float = Field(0.1, ge=0, le=1)
    """Probability of training on the "no label" token (classifier-free guidance)."""
    guidance: float = Field(1.25, ge=0)
    """Guidance scale s at sampling; 1 is the plain conditional model."""
    sample_steps: int = Field(50, ge=1)
    """DDIM steps used for evaluation and figures."""
    eta: float = Field(1.0, ge=0, le=1)
    """DDIM stochasticity: 0 deterministic, 1 the DDPM posterior variance (ancestral sampling
    on the shortened schedule, which scores better here)."""
    eval_ancestral: bool = True
    """Also score 178 ancestrally sampled images (T network calls each: slow on a CPU)."""
    n_generate: int = Field(890, ge=178)
    """Images generated for digits-FD and class coverage (5 chunks of the reference size)."""

    @model_validator(mode="after")
    def _steps_fit_the_schedule(self) -> DDPMConfig:
        if self.sample_steps > self.timesteps:
            raise ValueError(f"sample_steps ({self.sample_steps}) exceeds timesteps ({self.timesteps})")
        return self


def build_model(cfg: DDPMConfig) -> UNet:
    return UNet(cfg.width, cfg.classes, cfg.dropout, in_channels=cfg.channels)


class EMATrained(nn.Module):
    """The UNet being trained plus, when `decay` > 0, the moving average of its weights.

    `fit` trains and checkpoints this wrapper whole, so every checkpoint (and the best-epoch
    copy `fit` keeps) holds the average and its update count: a resumed run continues it
    exactly. `sampler` is the network to evaluate, sample with and save.
    """

    def __init__(self, net: UNet, decay: float) -> None:
        super().__init__()
        self.net = net
        self.ema = EMA(net, decay) if decay > 0 else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, t, y)                      # (B, C, H, W): training sees the live weights

    @property
    def classes(self) -> int:
        return self.net.classes

    @property
    def sampler(self) -> UNet:
        return self.net if self.ema is None else self.ema.model  # type: ignore[return-value]

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Update the average after each optimiser step (core.fit has no per-step callback)."""
        if self.ema is not None:
            ema, net = self.ema, self.net
            optimizer.register_step_post_hook(lambda *_: ema.update(net))


def to_model_scale(x: torch.Tensor) -> torch.Tensor:
    return 2 * x - 1                                    # [0, 1] -> [-1, 1]


def to_image_scale(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def diffusion_loss(model: UNet | EMATrained, schedule: NoiseSchedule, x0: torch.Tensor, y: torch.Tensor,
                   p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The simple loss (DDPM eq. 14) of a batch x0 (B, C, H, W) in [-1, 1] with labels (B,)."""
    b, device = len(x0), x0.device
    t = torch.randint(0, schedule.steps, (b,), generator=generator)          # (B,)
    noise = torch.randn(x0.shape, generator=generator).to(device)             # (B, C, H, W)
    drop = torch.rand(b, generator=generator).to(device) < p_uncond
    y = torch.where(drop, torch.full_like(y, model.classes), y)               # CFG label dropout
    x_t = q_sample(schedule, x0, t.to(device), noise)
    return F.mse_loss(model(x_t, t.to(device), y), noise)


def guided_eps_fn(model: UNet, labels: torch.Tensor | None, guidance: float) -> EpsFn:
    """eps(x_t, t) for a sampler: unconditional when `labels` is None, else guided."""
    if labels is None:
        return lambda x, t: model(x, t)
    null = torch.full_like(labels, model.classes)                             # "no label" token
    if guidance == 1.0:
        return lambda x, t: model(x, t, labels)

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))  # (2B, ...)
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)
    return eps


@torch.no_grad()
def generate(model: UNet, schedule: NoiseSchedule, n: int, *, labels: torch.Tensor | None,
             generator: torch.Generator, sampler: Literal["ddim", "ddpm"] = "ddim",
             steps: int = 50, guidance: float = 1.25, eta: float = 1.0, size: int = 8) -> torch.Tensor:
    """n images (n, C, size, size) in [0, 1]; `labels` (n,) or None for unconditional samples."""
    device = next(model.parameters()).device
    labels = None if labels is None else labels.to(device)
    eps_fn = guided_eps_fn(model.eval(), labels, guidance)
    shape = (n, model.inp.in_channels, size, size)
    if sampler == "ddpm":
        x = sample_ddpm(eps_fn, schedule, shape, generator, device=device)
    else:
        x = sample_ddim(eps_fn, schedule, shape, steps, generator, eta, device=device)
    return to_image_scale(x).cpu()


def balanced_labels(n: int, classes: int = 10) -> torch.Tensor:
    return torch.arange(n) % classes


def train(cfg: DDPMConfig, ctx: RunContext) -> dict[str, float]:
    data = load_image_set(cfg)
    schedule = make_schedule(cfg.noise_schedule, cfg.timesteps)
    loader = DataLoader(TensorDataset(to_model_scale(data.train_x), data.train_y),
                        batch_size=cfg.batch_size, shuffle=True)
    val_x, val_y = to_model_scale(data.val_x), data.val_y
    wrapper = EMATrained(build_model(cfg), cfg.ema_decay)
    optimizer = torch.optim.AdamW(wrapper.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    wrapper.attach(optimizer)

    def loss_fn(model: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        return diffusion_loss(model, schedule, batch[0], batch[1], cfg.p_uncond)

    def evaluate(_: nn.Module) -> dict[str, float]:
        # the same t, noise and dropped labels every epoch: a comparable validation loss, of
        # the averaged weights, so that the best epoch is the best network to sample with
        g, device = torch.Generator().manual_seed(1), next(wrapper.parameters()).device
        loss = diffusion_loss(wrapper.sampler, schedule, val_x.to(device), val_y.to(device),
                              cfg.p_uncond, g)
        return {"val_loss": float(loss)}

    result = fit(wrapper, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=ctx,
                 optimizer=optimizer, monitor="val_loss", mode="min")
    model = wrapper.sampler.eval()                    # fit restored the best epoch, average included
    ctx.save_model(model)
    learning_curves(result.history, ctx.figure_path("learning_curves.png"), "generative.ddpm")

    def sample(n: int, seed_offset: int, guidance: float = cfg.guidance,
               sampler: Literal["ddim", "ddpm"] = "ddim") -> tuple[torch.Tensor, torch.Tensor]:
        """n images with balanced labels 0, 1, ..., k-1, 0, 1, ..., and those labels."""
        labels = balanced_labels(n, cfg.classes)
        g = torch.Generator().manual_seed(cfg.seed + seed_offset)
        images = generate(model, schedule, n, labels=labels, generator=g, sampler=sampler,
                          steps=cfg.sample_steps, guidance=guidance, eta=cfg.eta, size=cfg.size)
        return images, labels

    fd = fd_name(data)  # digits_fd on the digits; shapes_fd or imagefolder_fd otherwise
    images, labels = sample(cfg.n_generate, 0)
    metrics = score_generated(data, images, labels)
    plain, _ = sample(cfg.n_generate, 1, guidance=1.0)
    metrics[f"{fd}_no_guidance"] = score_generated(data, plain)[fd]
    uncond = generate(model, schedule, cfg.n_generate, labels=None, steps=cfg.sample_steps,
                      generator=torch.Generator().manual_seed(cfg.seed + 2), eta=cfg.eta,
                      size=cfg.size)
    uncond_scores = score_generated(data, uncond)
    metrics[f"{fd}_unconditional"] = uncond_scores[fd]
    metrics["unconditional_min_class_share"] = uncond_scores["min_class_share"]
    if cfg.eval_ancestral:
        ancestral, _ = sample(reference_size(data), 3, sampler="ddpm")
        metrics[f"{fd}_ancestral"] = score_generated(data, ancestral)[fd]
        save_grid(ancestral[:100], ctx.figure_path("samples_ancestral.png"), 10,
                  f"ancestral DDPM ({cfg.timesteps} steps), guidance {cfg.guidance:g}")
    metrics.update(anchor_metrics(data))
    metrics["best_epoch"] = float(result.best_epoch)

    save_grid(class_rows(images, labels, cfg.classes), ctx.figure_path("samples_by_class.png"), 10,
              f"DDIM {cfg.sample_steps} steps, guidance {cfg.guidance:g}; one class per row")
    save_grid(uncond[:100], ctx.figure_path("samples_unconditional.png"), 10, "unconditional")
    sweep = [generate(model, schedule, 10, labels=torch.arange(10) % cfg.classes, steps=k,
                      guidance=cfg.guidance, eta=0.0, size=cfg.size,
                      generator=torch.Generator().manual_seed(cfg.seed))
             for k in (5, 10, 20, 50, 100) if k <= cfg.timesteps]
    save_grid(torch.cat(sweep), ctx.figure_path("ddim_steps.png"), 10,
              "deterministic DDIM (eta 0) from the same x_T: 5, 10, 20, 50, 100 steps (rows)")
    return metrics


RECIPE = register(Recipe(
    name="generative.ddpm",
    step="3",
    topic="Diffusion",
    summary="Class-conditional DDPM (UNet, cosine schedule) with DDIM sampling and guidance.",
    config=DDPMConfig,
    train=train,
    # The bar: the best digits-FD of all the recipes here, within 20 minutes: below the
    # lowest 3-seed mean of the others, the DCGAN's (the StyleGAN's is 19.5, the VAE's about 127)
    bar=Bar("digits_fd", "<", DCGAN_DIGITS_FD),
    quick_bar=Bar("digits_fd", "<", 120.0),
    budget_s=1200,
    quick={"epochs": 8, "timesteps": 200, "sample_steps": 20, "n_generate": 356,
           "eval_ancestral": False},
    build_model=build_model,
))

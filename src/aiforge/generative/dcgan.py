"""Step 3, generative models: DCGAN (Radford et al., 2016) on the 8x8 digits, conditional or not.

A generator G maps noise z ~ N(0, I) (and a class label) to an image; a discriminator D
scores images as real or generated. They play the GAN game (Goodfellow et al., 2014) with the
non-saturating generator loss of that paper (section 3):

    L_D = -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))        (real -> 1, fake -> 0)
    L_G = -log sigmoid(D(G(z)))                                  (instead of log(1 - D(G(z))))

DCGAN's architecture guidelines at 8x8 scale: strided (transposed) convolutions instead of
pooling, batch norm in G and in D except D's input layer, ReLU in G with tanh at the output,
LeakyReLU(0.2) in D, Adam with lr 2e-4 and beta1 = 0.5.

The conditional variant (Mirza & Osindero, 2014) feeds G a learned label embedding beside z,
and gives D a projection term (Miyato & Koyama, 2018, eq. 3): D(x, y) = psi(phi(x)) +
<embed(y), phi(x)>, which scores how well x matches y rather than only how real it looks.

`dataset=shapes` (32x32 colour) or `dataset=imagefolder` (a user's folder) trains at that
size and channel count (`generative.datasets`); the bars are the digits'. Images of 16, 32 or
64 pixels get deeper networks (`deep`): DCGAN's three up- and down-samplings, a spectrally
normalised discriminator with a minibatch-spread channel and global sum pooling, and the
mode-seeking loss; the two-stage 8x8 networks collapsed there (one image per class).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from aiforge.core import Bar, Recipe, RunContext, register
from aiforge.core.checkpoint import latest_checkpoint, save_checkpoint
from aiforge.core.plots import plt
from aiforge.core.progress import progress
from aiforge.core.seeding import rng_state, set_rng_state
from aiforge.generative.data import class_rows, save_grid
from aiforge.generative.datasets import ImageDataConfig, load_image_set
from aiforge.generative.image_eval import anchor_metrics, score_generated

CLASSES = 10
PROJECTION_FEATURES = 512  # D's features at 8x8 and width 32 (the digits setting)


class DCGANConfig(ImageDataConfig):
    steps: int = Field(4000, ge=1)
    """Generator updates (one discriminator update each)."""
    batch_size: int = Field(64, ge=2)
    """Real and generated images per update."""
    lr: float = Field(2e-4, gt=0, le=1)
    """Adam learning rate of both networks (Radford et al.)."""
    beta1: float = Field(0.5, ge=0, lt=1)
    """Adam beta1; 0.5 steadies GAN training (Radford et al.)."""
    latent_dim: int = Field(32, ge=1, le=512)
    """Size of the noise z."""
    width: int = Field(32, ge=8, le=512)
    """Channels of D's first layer and G's last hidden layer."""
    conditional: bool = True
    """Condition G and D on the digit class (projection discriminator)."""
    mode_seeking: float | None = Field(None, ge=0)
    """Weight of the mode-seeking term (Mao et al., 2019, eq. 3) in the generator's loss; None: 1 for the deeper networks of 16+ pixel images, 0 at 8x8 (the digits were
    measured without it). Without it the 32x32 generator ignored z: one image per class."""
    checkpoint_every: int = Field(1000, ge=1)
    """Save a resumable checkpoint every this many steps."""
    n_generate: int = Field(890, ge=178)
    """Images generated for digits-FD and class coverage (5 chunks of the reference size)."""


def deep(size: int) -> bool:
    """Whether images of this side get the deeper, DCGAN-paper networks (`_deep_generator`,
    `_deep_features`): every multiple of 8 from 16 up. The 8x8 digits (and sizes that are not a
    multiple of 8) keep the two-stage networks their bars were measured with."""
    return size >= 16 and size % 8 == 0


def _small_generator(in_dim: int, w: int, size: int, channels: int) -> nn.Sequential:
    """(size/4)^2 map -> two stride-2 transposed convs -> 3x3 conv: the digits' generator."""
    s = size // 4
    return nn.Sequential(
        nn.Linear(in_dim, 4 * w * s * s, bias=False), nn.Unflatten(1, (4 * w, s, s)),
        nn.BatchNorm2d(4 * w), nn.ReLU(),
        nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1, bias=False),  # s -> 2s
        nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),      # 2s -> 4s
        nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, channels, 3, padding=1), nn.Tanh(),
    )


def _deep_generator(in_dim: int, w: int, size: int, channels: int) -> nn.Sequential:
    """DCGAN's generator (Radford et al., 2016, fig. 1, at 32x32 as their CIFAR-10 nets):
    a (size/8)^2 map (4x4 at 32x32) and three stride-2 transposed convs 4 -> 8 -> 16 -> 32,
    the last one writing the image, so every pixel comes from a learned up-sampling."""
    s = size // 8
    return nn.Sequential(
        nn.Linear(in_dim, 4 * w * s * s, bias=False), nn.Unflatten(1, (4 * w, s, s)),
        nn.BatchNorm2d(4 * w), nn.ReLU(),                                       # (B, 4w, 4, 4)
        nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1, bias=False),  # -> (B, 2w, 8, 8)
        nn.BatchNorm2d(2 * w), nn.ReLU(),
        nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),      # -> (B, w, 16, 16)
        nn.BatchNorm2d(w), nn.ReLU(),
        nn.ConvTranspose2d(w, channels, 4, stride=2, padding=1), nn.Tanh(),   # -> (B, C, 32, 32)
    )


class Generator(nn.Module):
    """z (and a label) -> linear -> map -> stride-2 transposed convs -> image in [-1, 1].
    At the digits' 8x8 the map starts at 2x2 and grows twice (`_small_generator`); at 16, 32
    or 64 pixels it starts at size/8 and grows three times (`_deep_generator`)."""

    def __init__(self, latent_dim: int = 32, width: int = 64, conditional: bool = True, *,
                 channels: int = 1, size: int = 8, classes: int = CLASSES) -> None:
        super().__init__()
        self.latent_dim, self.conditional = latent_dim, conditional
        self.label_emb = nn.Embedding(classes, latent_dim) if conditional else None
        in_dim = 2 * latent_dim if conditional else latent_dim
        layers = _deep_generator if deep(size) else _small_generator
        self.net = layers(in_dim, width, size, channels)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim), labels y (B,) -> images (B, C, size, size) in [-1, 1]."""
        if self.label_emb is not None:
            if y is None:
                raise ValueError("a conditional generator needs labels")
            z = torch.cat([z, self.label_emb(y)], dim=1)       # (B, 2 * latent_dim)
        return self.net(z)


def _small_features(channels: int, w: int) -> nn.Sequential:
    """The digits' discriminator body: a 3x3 conv, then two stride-2 convs (s -> s/4)."""
    return nn.Sequential(
        nn.Conv2d(channels, w, 3, padding=1), nn.LeakyReLU(0.2),               # no BN here
        nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=False),               # s -> s/2
        nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1, bias=False),           # s/2 -> s/4
        nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2), nn.Flatten(),
    )


def _deep_features(channels: int, w: int) -> nn.Sequential:
    """DCGAN's discriminator body at 32x32 (Radford et al., 2016): three stride-2 4x4 convs,
    32 -> 16 -> 8 -> 4, LeakyReLU(0.2), then global sum pooling, the phi(x) of the projection
    discriminator (Miyato & Koyama, 2018). Two changes, each measured on the shapes:
    - spectral norm on every weight instead of batch norm (Miyato et al., 2018): with batch
      norm the generator drew per-pixel colour noise that D accepted (the shapes' textured
      backgrounds are noisy too); with spectral norm it drew smooth colour fields.
    - a minibatch standard deviation channel before the last conv (Karras et al., 2018,
      section 3): even with spectral norm the generator ignored z and drew one image per
      class. D sees a real and a generated batch separately, and this channel tells it how
      much the images of a batch differ. Alone it raised the variety only a little; the
      mode-seeking loss in `train` did the rest."""
    sn = nn.utils.parametrizations.spectral_norm
    return nn.Sequential(
        sn(nn.Conv2d(channels, w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),  # (B, w, 16, 16)
        sn(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),     # (B, 2w, 8, 8)
        MinibatchStd(),                                                          # (B, 2w + 1, 8, 8)
        sn(nn.Conv2d(2 * w + 1, 4 * w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),  # (B, 4w, 4, 4)
        SumPool(),                                                               # (B, 4w)
    )


class MinibatchStd(nn.Module):
    """(B, C, H, W) -> (B, C + 1, H, W): appends the batch's standard deviation, averaged over
    channels and positions, as one constant channel (Karras et al., 2018, section 3)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        spread = h.std(0, unbiased=False).mean()                  # scalar: variety of the batch
        return torch.cat([h, spread.expand(h.shape[0], 1, *h.shape[2:])], dim=1)


class SumPool(nn.Module):
    """(B, C, H, W) -> (B, C): sum over positions (Miyato & Koyama's global sum pooling)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.sum((2, 3))


class Discriminator(nn.Module):
    """Image (and label) -> logit of "real". At 8x8 a linear score over the flattened
    (size/4)^2 map (`_small_features`); at 16, 32 or 64 pixels the deeper DCGAN body with
    global sum pooling (`_deep_features`), whose feature count (4w) does not grow with the
    image, so neither does the projection term."""

    def __init__(self, width: int = 64, conditional: bool = True, *, channels: int = 1,
                 size: int = 8, classes: int = CLASSES) -> None:
        super().__init__()
        w = width
        if deep(size):
            self.features, flat = _deep_features(channels, w), 4 * w
        else:
            self.features, flat = _small_features(channels, w), 4 * w * (size // 4) ** 2
        self.score = nn.Linear(flat, 1)
        self.label_emb = nn.Embedding(classes, flat) if conditional else None
        if deep(size):
            # spectral norm on psi and on the projection embedding too (Miyato & Koyama, 2018)
            self.score = nn.utils.parametrizations.spectral_norm(self.score)
            if self.label_emb is not None:
                self.label_emb = nn.utils.parametrizations.spectral_norm(self.label_emb)
        elif self.label_emb is not None and flat > PROJECTION_FEATURES:
            # The projection sums `flat` products, so with N(0, 1) embeddings its scale grows
            # as sqrt(flat): at 32x32 (4,096 features at width 16) the first D loss was about
            # 46 (17 with this scaling). Scale the embedding so the term starts as large as at
            # the digits' 8x8, where the bars were measured.
            with torch.no_grad():
                self.label_emb.weight.mul_((PROJECTION_FEATURES / flat) ** 0.5)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, size, size) in [-1, 1] -> logits (B,) of "real"."""
        h = self.features(x)                                    # (B, flat)
        logit = self.score(h).squeeze(1)
        if self.label_emb is not None and y is not None:
            logit = logit + (self.label_emb(y) * h).sum(1)      # projection term
        return logit


def build_model(cfg: DCGANConfig) -> Generator:
    return Generator(cfg.latent_dim, cfg.width, cfg.conditional, channels=cfg.channels,
                     size=cfg.size, classes=cfg.classes)


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating loss: -log sigmoid(D(G(z))) (Goodfellow et al., 2014, section 3)."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mao et al. (2019), eq. 3: images from two z of the same label should differ in
    proportion to their z. Pairs are the two halves of the batch; the loss is the inverse of
    the ratio of mean absolute differences, minimised by spreading the images apart."""
    a, b = fake.chunk(2)                                                      # (B/2, C, H, W)
    za, zb = z.chunk(2)                                                       # (B/2, latent)
    ratio = (a - b).abs().mean((1, 2, 3)) / (za - zb).abs().mean(1)           # (B/2,)
    return 1.0 / (ratio.mean() + 1e-5)


@torch.no_grad()
def generate(model: Generator, n: int, *, labels: torch.Tensor | None,
             generator: torch.Generator) -> torch.Tensor:
    """n images (n, C, size, size) in [0, 1]; labels (n,) for a conditional generator."""
    was_training = model.training
    model.eval()
    z = torch.randn(n, model.latent_dim, generator=generator)
    images = (model(z, labels if model.conditional else None) + 1) / 2
    model.train(was_training)
    return images.clamp(0, 1)


def mode_seeking_weight(cfg: DCGANConfig) -> float:
    """The config's mode-seeking weight, or its default for the image size (None)."""
    if cfg.mode_seeking is not None:
        return cfg.mode_seeking
    return 1.0 if deep(cfg.size) else 0.0


def _curves(history: list[dict[str, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [row["step"] for row in history]
    for key in ("d_loss", "g_loss"):
        ax.plot(steps, [row[key] for row in history], label=key)
    ax.set(xlabel="step", ylabel="loss", title="DCGAN losses (mean over 100 steps)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(cfg: DCGANConfig, ctx: RunContext) -> dict[str, float]:

    data = load_image_set(cfg)
    real_x, real_y = 2 * data.train_x - 1, data.train_y         # [-1, 1], like tanh
    g_net = build_model(cfg)
    d_net = Discriminator(cfg.width, cfg.conditional, channels=cfg.channels, size=cfg.size,
                          classes=cfg.classes)
    seek = mode_seeking_weight(cfg)
    g_opt = torch.optim.Adam(g_net.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    d_opt = torch.optim.Adam(d_net.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    history: list[dict[str, float]] = []
    start = 0
    if ctx.resume and (ckpt := latest_checkpoint(ctx.checkpoint_dir)) is not None:
        ckpt.load_weights(g_net)
        d_net.load_state_dict(ckpt.state["discriminator"])
        g_opt.load_state_dict(ckpt.state["g_opt"])
        d_opt.load_state_dict(ckpt.state["d_opt"])
        set_rng_state(ckpt.state["rng_tensors"], ckpt.state["rng_plain"])
        history, start = ckpt.state["history"], ckpt.step

    started, sums = time.perf_counter(), {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0}
    with progress(ctx.quiet) as bars:
        task = bars.add_task(ctx.recipe, total=cfg.steps, completed=start, info="")
        for step in range(start + 1, cfg.steps + 1):
            idx = torch.randint(0, len(real_y), (cfg.batch_size,))
            x, y = real_x[idx], real_y[idx]
            if seek > 0:
                half = torch.randint(0, cfg.classes, (cfg.batch_size // 2,))
                fake_y = torch.cat([half, half])            # two z per label, paired by halves
                z = torch.randn(len(fake_y), cfg.latent_dim)
            else:                                           # the digits' stream, unchanged
                fake_y = torch.randint(0, cfg.classes, (cfg.batch_size,))
                z = torch.randn(cfg.batch_size, cfg.latent_dim)
            fake = g_net(z, fake_y if cfg.conditional else None)
            cond_y = y if cfg.conditional else None
            fake_cond = fake_y if cfg.conditional else None

            d_real = d_net(x, cond_y)                       # (B,)
            d_loss = discriminator_loss(d_real, d_net(fake.detach(), fake_cond))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()

            g_loss = generator_loss(d_net(fake, fake_cond))
            if seek > 0:
                g_loss = g_loss + seek * mode_seeking_loss(fake, z)
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()

            sums["d_loss"] += d_loss.item()
            sums["g_loss"] += g_loss.item()
            sums["d_real"] += torch.sigmoid(d_real).mean().item()
            if step % 100 == 0:
                row = {"step": float(step), **{k: v / 100 for k, v in sums.items()}}
                history.append(row)
                ctx.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
                sums = dict.fromkeys(sums, 0.0)
                bars.update(task, info=f"D {row['d_loss']:.3f} G {row['g_loss']:.3f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                tensors, plain = rng_state()
                save_checkpoint(ctx.checkpoint_dir, step, g_net,
                                {"discriminator": d_net.state_dict(), "g_opt": g_opt.state_dict(),
                                 "d_opt": d_opt.state_dict(), "rng_tensors": tensors,
                                 "rng_plain": plain, "history": history},
                                ctx.config.model_dump(mode="json"))
            bars.update(task, advance=1)

    g_net.eval()
    ctx.save_model(g_net)
    gen = torch.Generator().manual_seed(cfg.seed)
    labels = torch.arange(cfg.n_generate) % cfg.classes
    images = generate(g_net, cfg.n_generate, labels=labels, generator=gen)
    metrics = score_generated(data, images, labels if cfg.conditional else None)
    metrics.update(anchor_metrics(data))
    metrics["train_seconds"] = time.perf_counter() - started
    if cfg.conditional:
        save_grid(class_rows(images, labels, cfg.classes), ctx.figure_path("samples.png"), 10,
                  "conditional DCGAN, one class per row")
    else:
        save_grid(images[:100], ctx.figure_path("samples.png"), 10, "DCGAN samples")
    if history:
        _curves(history, ctx.figure_path("losses.png"))
    return metrics


CLASS_BALANCE = (Bar("min_class_share", ">=", 0.05), Bar("max_class_share", "<=", 0.15))
"""Every class between 5 and 15 % of the samples (as labelled by the digits classifier); a
class with no samples has share 0, so this also asks for all ten classes."""

RECIPE = register(Recipe(
    name="generative.dcgan",
    step="3",
    topic="GAN",
    summary="DCGAN (conditional by default, projection discriminator) on the 8x8 digits.",
    config=DCGANConfig,
    train=train,
    # The bar says three things: digits-FD below the VAE's (119.5, measured), all ten
    # classes generated, and each class between 5 and 15 % of the samples.
    bar=Bar("digits_fd", "<", 119.5, also=CLASS_BALANCE),
    quick_bar=Bar("digits_fd", "<", 120.0, also=CLASS_BALANCE),
    budget_s=600,
    quick={"steps": 800},
    build_model=build_model,
))

"""Step 3, generative models: a small StyleGAN2 (Karras et al., 2019; 2020) on the 8x8 digits.

The parts that make a StyleGAN, each at 8x8 scale:

- mapping network: z -> normalised -> MLP -> w, an intermediate latent that need not follow
  the data's entangled factors (StyleGAN, section 2). Class-conditional as in StyleGAN2-ADA:
  a label embedding is normalised and concatenated with z before the MLP.
- synthesis network: a learned 4x4 constant, then modulated 3x3 convolutions whose input
  channels are scaled by a per-layer style s = A(w) and whose output channels are
  *demodulated* to unit expected variance (StyleGAN2, section 2.2, eqs. 1-3), per-pixel noise
  inputs with learned strength, nearest upsampling to 8x8, and a modulated 1x1 "toRGB"
  (no demodulation).
- style mixing: a share of the training batch uses w1 for the first layers and w2 after a
  random crossover (StyleGAN, section 3.1); figures show the same mixing grid.
- truncation: w' = w_avg + psi (w - w_avg) with w_avg an exponential moving average of w
  (StyleGAN, section 3.2).
- R1 penalty: gamma / 2 E[|grad_x D(x)|^2] on real images (Mescheder et al., 2018), applied
  every `r1_every` steps with its weight scaled up to match ("lazy regularisation",
  StyleGAN2, section 3.1). The discriminator has no batch norm, so the gradient is per image.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from aiforge.core import Bar, Recipe, RecipeConfig, RunContext, register
from aiforge.core.progress import progress
from aiforge.data.digits import digits_splits
from aiforge.generative.data import save_grid
from aiforge.generative.evaluation import (
    DCGAN_DIGITS_FD,
    anchors,
    features_and_labels,
    score_samples,
)

CLASSES = 10
NUM_WS = 4  # styles: conv at 4x4, two convs at 8x8, toRGB


class StyleGANConfig(RecipeConfig):
    steps: int = Field(4000, ge=1)
    """Generator updates (one discriminator update each)."""
    batch_size: int = Field(64, ge=2)
    """Real and generated images per update."""
    lr: float = Field(2e-3, gt=0, le=1)
    """Adam learning rate of G's synthesis network and of D (StyleGAN2: 0.0025)."""
    mapping_lr_mult: float = Field(0.01, gt=0, le=1)
    """The mapping network learns this many times slower (StyleGAN, appendix C)."""
    w_dim: int = Field(64, ge=4, le=512)
    """Size of z and w."""
    width: int = Field(64, ge=8, le=512)
    """Channels of the synthesis convolutions."""
    mixing_prob: float = Field(0.9, ge=0, le=1)
    """Share of generated training images made with two ws (style mixing regularisation)."""
    r1_gamma: float = Field(0.05, ge=0)
    """R1 weight gamma; 0 turns it off."""
    r1_every: int = Field(4, ge=1)
    """Apply R1 every this many D steps, scaled by this factor (lazy regularisation)."""
    psi: float = Field(1.0, ge=0, le=1)
    """Truncation psi for the evaluation samples (1: no truncation)."""
    n_generate: int = Field(890, ge=178)
    """Images generated for digits-FD and class coverage."""


# --- the modulated convolution -----------------------------------------------------------

class ModulatedConv2d(nn.Module):
    """StyleGAN2 eqs. 1-3: w'_ijk = s_i w_ijk, then w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps),
    run as one grouped convolution with a weight per image."""

    def __init__(self, c_in: int, c_out: int, kernel: int, w_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.affine = nn.Linear(w_dim, c_in)                 # "A" in the paper's figure 2
        nn.init.zeros_(self.affine.weight)
        nn.init.ones_(self.affine.bias)                      # styles start at 1
        self.scale = 1 / math.sqrt(c_in * kernel * kernel)   # equalised learning rate
        self.demodulate, self.padding = demodulate, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x (B, c_in, H, W), w (B, w_dim) -> (B, c_out, H, W)."""
        b, c_in, h, wd = x.shape
        s = self.affine(w)                                                    # (B, c_in)
        weight = self.scale * self.weight[None] * s[:, None, :, None, None]   # (B, out, in, k, k)
        if self.demodulate:
            d = torch.rsqrt(weight.pow(2).sum((2, 3, 4)) + 1e-8)              # (B, out)
            weight = weight * d[:, :, None, None, None]
        out = F.conv2d(x.reshape(1, b * c_in, h, wd), weight.flatten(0, 1),
                       padding=self.padding, groups=b)                        # (1, B*out, H, W)
        return out.view(b, -1, h, wd)


class StyleLayer(nn.Module):
    """Modulated conv, per-pixel noise with a learned strength, bias, leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, w)                                                   # (B, out, H, W)
        if noise is None:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device)
        x = x + self.noise_strength * noise + self.bias[None, :, None, None]
        return F.leaky_relu(x, 0.2) * math.sqrt(2)                            # gain keeps variance


# --- generator ----------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    def __init__(self, w_dim: int, layers: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(CLASSES, w_dim)
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(2 * w_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """z (B, w_dim), labels (B,) -> w (B, w_dim); both inputs normalised to unit RMS."""
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        c = self.embed(y)
        c = c * torch.rsqrt(c.pow(2).mean(1, keepdim=True) + 1e-8)
        return self.net(torch.cat([z, c], dim=1))


class StyleGenerator(nn.Module):
    def __init__(self, w_dim: int = 64, width: int = 64) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.mapping = MappingNetwork(w_dim)
        self.const = nn.Parameter(torch.randn(1, width, 4, 4))
        self.layers = nn.ModuleList([StyleLayer(width, width, w_dim) for _ in range(NUM_WS - 1)])
        self.to_rgb = ModulatedConv2d(width, 1, 1, w_dim, demodulate=False)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """ws (B, NUM_WS, w_dim), one w per layer -> images (B, 1, 8, 8), unbounded."""
        x = self.const.expand(ws.shape[0], -1, -1, -1)                        # (B, C, 4, 4)
        x = self.layers[0](x, ws[:, 0])
        x = F.interpolate(x, scale_factor=2, mode="nearest")                  # (B, C, 8, 8)
        x = self.layers[1](x, ws[:, 1])
        x = self.layers[2](x, ws[:, 2])
        return self.to_rgb(x, ws[:, 3])                                       # (B, 1, 8, 8)

    def ws(self, z: torch.Tensor, y: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """z (B, w_dim), labels (B,) -> ws (B, NUM_WS, w_dim), truncated towards w_avg."""
        w = self.mapping(z, y)
        w = self.w_avg + psi * (w - self.w_avg)                               # StyleGAN eq. in 3.2
        return w[:, None].expand(-1, NUM_WS, -1)

    def forward(self, z: torch.Tensor, y: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        return self.synthesis(self.ws(z, y, psi))


def mix_styles(ws1: torch.Tensor, ws2: torch.Tensor, crossover: torch.Tensor) -> torch.Tensor:
    """Layers before `crossover` (B,) take ws1, the rest ws2 (StyleGAN, section 3.1)."""
    layer = torch.arange(ws1.shape[1])[None, :, None]                         # (1, NUM_WS, 1)
    return torch.where(layer < crossover[:, None, None], ws1, ws2)


# --- discriminator ------------------------------------------------------------------------

class StyleDiscriminator(nn.Module):
    """Convs with leaky ReLU and no batch norm (R1 needs per-image gradients), a projection
    term for the label (Miyato & Koyama, 2018)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),    # 8 -> 4
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.LeakyReLU(0.2),  # 4 -> 2
            nn.Flatten(),
        )
        self.score = nn.Linear(8 * w, 1)
        self.embed = nn.Embedding(CLASSES, 8 * w)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x)                                                  # (B, 8w)
        return self.score(h).squeeze(1) + (self.embed(y) * h).sum(1)          # (B,)


def r1_penalty(d_net: StyleDiscriminator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E[|grad_x D(x)|^2] over real images (Mescheder et al., 2018, eq. 9 without gamma/2)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d_net(x, y).sum(), x, create_graph=True)
    return grad.pow(2).sum((1, 2, 3)).mean()


def build_model(cfg: StyleGANConfig) -> StyleGenerator:
    return StyleGenerator(cfg.w_dim, cfg.width)


@torch.no_grad()
def generate(model: StyleGenerator, labels: torch.Tensor, *, generator: torch.Generator,
             psi: float = 1.0) -> torch.Tensor:
    """Images (n, 1, 8, 8) in [0, 1] for labels (n,); the noise inputs come from `generator`."""
    z = torch.randn(len(labels), model.w_dim, generator=generator)
    ws = model.ws(z, labels, psi)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        images = model.synthesis(ws)
    return ((images + 1) / 2).clamp(0, 1)


@torch.no_grad()
def mixing_grid(model: StyleGenerator, generator: torch.Generator, psi: float = 1.0) -> torch.Tensor:
    """Row 0: five "source" digits; column 0: five "destination" digits; cell (i, j): the
    destination's coarse styles (the 4x4 layer and the first 8x8 layer) with the source's
    fine ones (the last 8x8 layer and toRGB). Returns (36, 1, 8, 8), corner blank."""
    n = 5
    labels = torch.arange(2 * n) % CLASSES
    ws = model.ws(torch.randn(2 * n, model.w_dim, generator=generator), labels, psi)
    src, dst = ws[:n], ws[n:]
    cells = [torch.zeros(1, NUM_WS, model.w_dim)]  # the blank corner, replaced below
    cells += [src[j:j + 1] for j in range(n)]
    for i in range(n):
        cells.append(dst[i:i + 1])
        cells += [mix_styles(dst[i:i + 1], src[j:j + 1], torch.tensor([2])) for j in range(n)]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        images = (model.synthesis(torch.cat(cells)) + 1) / 2
    images[0] = 0
    return images.clamp(0, 1)                                                 # (36, 1, 8, 8)


def train(cfg: StyleGANConfig, ctx: RunContext) -> dict[str, float]:
    data = digits_splits()["train"]
    real_x, real_y = 2 * data.x - 1, data.y
    g_net, d_net = build_model(cfg), StyleDiscriminator(cfg.width)
    g_opt = torch.optim.Adam([
        {"params": [p for n, p in g_net.named_parameters() if not n.startswith("mapping")]},
        {"params": g_net.mapping.parameters(), "lr": cfg.lr * cfg.mapping_lr_mult},
    ], lr=cfg.lr, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(d_net.parameters(), lr=cfg.lr, betas=(0.0, 0.99))
    started, b = time.perf_counter(), cfg.batch_size
    sums = {"d_loss": 0.0, "g_loss": 0.0, "r1": 0.0}
    with progress(ctx.quiet) as bars:
        task = bars.add_task(ctx.recipe, total=cfg.steps, info="")
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(0, len(real_y), (b,))
            x, y = real_x[idx], real_y[idx]
            fake_y = torch.randint(0, CLASSES, (b,))
            ws = g_net.ws(torch.randn(b, cfg.w_dim), fake_y)
            mixed = mix_styles(ws, g_net.ws(torch.randn(b, cfg.w_dim), fake_y),
                               torch.randint(1, NUM_WS, (b,)))
            use_mix = (torch.rand(b) < cfg.mixing_prob)[:, None, None]
            fake = g_net.synthesis(torch.where(use_mix, mixed, ws))           # (B, 1, 8, 8)

            # D: logistic loss (softplus form of the non-saturating GAN), lazy R1 on reals
            d_loss = F.softplus(-d_net(x, y)).mean() + F.softplus(d_net(fake.detach(), fake_y)).mean()
            if cfg.r1_gamma > 0 and step % cfg.r1_every == 0:
                r1 = r1_penalty(d_net, x, y)
                d_loss = d_loss + cfg.r1_gamma / 2 * r1 * cfg.r1_every
                sums["r1"] += r1.item() * cfg.r1_every
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()

            g_loss = F.softplus(-d_net(fake, fake_y)).mean()
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
            with torch.no_grad():  # w_avg for truncation (StyleGAN2's w_avg_beta = 0.995)
                g_net.w_avg.lerp_(ws[:, 0].mean(0), 0.005)

            sums["d_loss"] += d_loss.item()
            sums["g_loss"] += g_loss.item()
            if step % 100 == 0:
                ctx.log_metrics({k: v / 100 for k, v in sums.items()}, step=step)
                bars.update(task, info=f"D {sums['d_loss'] / 100:.3f} G {sums['g_loss'] / 100:.3f}")
                sums = dict.fromkeys(sums, 0.0)
            bars.update(task, advance=1)

    g_net.eval()
    ctx.save_model(g_net)
    labels = torch.arange(cfg.n_generate) % CLASSES
    images = generate(g_net, labels, generator=torch.Generator().manual_seed(cfg.seed), psi=cfg.psi)
    metrics = score_samples(images)
    predicted = torch.from_numpy(features_and_labels(images)[1])
    metrics["label_agreement"] = float((predicted == labels).float().mean())
    truncated = generate(g_net, labels, generator=torch.Generator().manual_seed(cfg.seed), psi=0.7)
    metrics["digits_fd_psi_0.7"] = score_samples(truncated)["digits_fd"]
    ref = anchors()
    metrics["fd_floor"], metrics["fd_ceiling"] = ref["fd_floor_real_halves"], ref["fd_ceiling_gaussian"]
    metrics["train_seconds"] = time.perf_counter() - started
    grid = images[:100].view(10, 10, 1, 8, 8).transpose(0, 1).reshape(100, 1, 8, 8)
    save_grid(grid, ctx.figure_path("samples.png"), 10, "StyleGAN, one class per row")
    save_grid(mixing_grid(g_net, torch.Generator().manual_seed(cfg.seed)),
              ctx.figure_path("style_mixing.png"), 6,
              "mixing: row = coarse, column = fine")
    return metrics


RECIPE = register(Recipe(
    name="generative.stylegan",
    step="3",
    topic="GAN",
    summary="A small class-conditional StyleGAN2 (mapping net, modulated convs, noise, "
            "style mixing, truncation, R1) on the 8x8 digits.",
    config=StyleGANConfig,
    train=train,
    # the bar: digits-FD below the DCGAN's, read as its 3-seed mean, the same reference
    # generative.ddpm's bar uses; where it is missed the docs give the reason
    bar=Bar("digits_fd", "<", DCGAN_DIGITS_FD),
    quick_bar=Bar("digits_fd", "<", 150.0),
    budget_s=600,
    quick={"steps": 600, "width": 32},
    build_model=build_model,
))

"""Step 3, generative models: CycleGAN (Zhu et al., 2017), unpaired translation between printed
and handwritten 8x8 digits.

Two domains with no pairs between them: A, printed digits rendered from fonts
(`aiforge.data.printed_digits`), and B, scikit-learn's handwritten digits. Two generators
G: A -> B and F: B -> A and two discriminators D_B, D_A are trained on images alone: the
digit labels of either domain are never shown to the loop (they grade the result afterwards).
The objective (paper, eqs. 1-3, with the least-squares GAN loss of section 4 / Mao et al., 2017):

    L_GAN(G, D_B) = E_b[(D_B(b) - 1)^2] + E_a[D_B(G(a))^2]          (D_B: real -> 1, fake -> 0)
    L_cyc(G, F)   = E_a[|F(G(a)) - a|_1] + E_b[|G(F(b)) - b|_1]      (eq. 2)
    L_id(G, F)    = E_b[|G(b) - b|_1] + E_a[|F(a) - a|_1]            (section 5.2, "identity")
    G, F minimise (D(G(a)) - 1)^2 terms + lambda L_cyc + lambda_id lambda L_id

Nothing in that objective names the digit: cycle consistency only asks that the translation be
invertible, and a permutation of the digits would be invertible too (measured: plain CycleGAN
keeps no more digits than the untranslated images do, see the docs). CyCADA (Hoffman et al.,
2018, eq. 4) adds a semantic-consistency loss with a classifier f_S trained on the *source*
domain only (printed digits, labelled because we render them) and then frozen:
CE(f_S(G(a)), argmax f_S(a)) + CE(f_S(F(b)), argmax f_S(b)): a translation must not change the
digit. On b, f_S's reading is only a pseudo-label: no handwritten label is used anywhere in
training. `semantic_weight` scales it; 0 is plain CycleGAN. Read by f_S, though, the G(a) term
rewards keeping the printed *shape* (f_S has seen no other): measured, f_S read 99 % of the
translations as the printed digit, a classifier of real handwritten digits 60 %. So G(a) is read
by a classifier of the target domain instead, f_T (CyCADA's target task model), learned with
pseudo-labels on the unlabelled handwritten images (`cyclegan_adapt`; `adapt_refresh_at` > 0
rebuilds it once from the translations):

    L_sem(G, F) = CE(f_T(G(a)), argmax f_S(a)) + CE(f_S(F(b)), argmax f_S(b))

That the digit's identity survives is the result this recipe measures, with a classifier per
domain that the loop never sees (`cyclegan_eval`).

The paper's training details, at 8x8 scale: a ResNet generator (Johnson et al., 2016) with
instance norm and reflection padding, a PatchGAN discriminator, lambda = 10 (3 here),
lambda_id = 0.5 (0 here), Adam (lr 2e-4, beta1 0.5), the learning rate constant for the
first half and then decayed linearly to zero, and D trained on a pool of the 50 last generated
images (Shrivastava et al., 2017) rather than only the newest ones, which damps oscillation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from aiforge.core import Bar, InputError, Recipe, RecipeConfig, RunContext, load_model, register
from aiforge.core.checkpoint import latest_checkpoint, save_checkpoint
from aiforge.core.loading import load_model_config
from aiforge.core.plots import plt
from aiforge.core.progress import progress
from aiforge.core.seeding import rng_state, set_rng_state
from aiforge.data.digits import digits_splits
from aiforge.data.printed_digits import render_printed_digits
from aiforge.generative.cyclegan_adapt import TargetSide
from aiforge.generative.cyclegan_eval import (
    accuracy,
    evaluate_translation,
    train_printed_classifier,
)
from aiforge.generative.data import save_grid

Direction = Literal["printed_to_handwritten", "handwritten_to_printed"]
DIRECTIONS: tuple[Direction, ...] = ("printed_to_handwritten", "handwritten_to_printed")
PRINTED_TRAIN_SEED = 0  # the rendered sets are data, not part of a run: they never follow --seed
PRINTED_TEST_SEED = 1
SEMANTIC_CLASSIFIER_SEED = 1  # f_S: not the seed of the printed grading classifier (0)


class CycleGANConfig(RecipeConfig):
    steps: int = Field(5000, ge=1)
    """Generator updates (each followed by one update of both discriminators)."""
    batch_size: int = Field(32, ge=1)
    """Images of each domain per update (drawn independently: the domains are unpaired)."""
    lr: float = Field(1e-3, gt=0, le=1)
    """Adam learning rate of generators and discriminators (Zhu et al.: 2e-4 at batch size 1;
    1e-3 here at batch 32 and a few thousand steps, measured better: see the docs)."""
    beta1: float = Field(0.5, ge=0, lt=1)
    """Adam beta1 (Zhu et al.: 0.5)."""
    decay_start: float = Field(0.5, ge=0, le=1)
    """Share of the steps after which the learning rate decays linearly to 0 (paper: half)."""
    width: int = Field(16, ge=4, le=256)
    """Channels of the generators' first layer (2x after the downsampling)."""
    res_blocks: int = Field(3, ge=0, le=16)
    """Residual blocks at 4x4 in each generator (paper: 6 or 9 at 64x64)."""
    downsample: bool = True
    """Generators work at 4x4 between a stride-2 conv and a transposed conv (the paper's
    layout); false keeps 8x8 throughout."""
    disc_width: int = Field(16, ge=4, le=256)
    """Channels of the discriminators' first layer."""
    lambda_cycle: float = Field(3.0, ge=0)
    """Weight of the cycle-consistency loss (Zhu et al.: 10; 3 here leaves the generator room
    to redraw a printed shape the way people write it: see the docs)."""
    lambda_identity: float = Field(0.0, ge=0)
    """Weight of the identity loss, as a multiple of lambda_cycle (Zhu et al.: 0.5; 0 here, as
    it too asks the generators to keep shapes)."""
    semantic_weight: float = Field(3.0, ge=0)
    """Weight of CyCADA's semantic-consistency loss (Hoffman et al., 2018): G(a) must be read as
    the digit f_S (trained on the printed digits' labels) reads in a, F(b) as f_S reads b.
    0 is plain CycleGAN (no label of any kind in training)."""
    semantic_target: Literal["adapted", "source"] = "adapted"
    """Who reads G(a) in the semantic loss: "adapted", a handwritten-digit classifier f_T
    learned from unlabelled handwritten images with pseudo-labels (`cyclegan_adapt`); "source",
    f_S itself, as in CyCADA's eq. 4 (it rewards keeping printed shapes: see the docs). F(b) is
    always read by f_S."""
    adapt_refresh_at: float = Field(0.0, ge=0, lt=1)
    """Share of the steps after which f_T is rebuilt, once, from the translations (classifiers
    trained on G(a) with the printed labels make its pseudo-labels); 0, the default, keeps the
    first f_T. Since the printed classifiers draw with the handwritten pens' ink, the rebuild
    no longer helps: it kept the labels or lost 7 points of them (see the docs)."""
    adapt_ensemble: int = Field(3, ge=1, le=10)
    """Classifiers (of shape-augmented printed digits, later of translations) whose mean
    probabilities make f_T's pseudo-labels."""
    adapt_clusters: int = Field(20, ge=10, le=200)
    """k-means clusters of the handwritten images; probabilities are averaged over each."""
    adapt_clusterings: int = Field(5, ge=1, le=50)
    """k-means clusterings (different seeds) whose cluster means are averaged: one clustering's
    borders decide a straddling cluster's label for two digits (see the docs)."""
    adapt_epochs: int = Field(8, ge=1, le=100)
    """Passes over the printed (or translated) digits per classifier of the ensemble."""
    pool_size: int = Field(50, ge=0)
    """Generated images kept for the discriminators' history; 0 uses only the newest."""
    printed_images: int = Field(3000, ge=10)
    """Printed digits rendered as domain A's training set."""
    checkpoint_every: int = Field(1000, ge=1)
    """Save a resumable checkpoint every this many steps."""


def printed_domain(n: int, seed: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Domain A: n printed digits (n, 1, 8, 8) and their labels, size-normalised like the
    handwritten ones, so that the two domains differ in style (fonts vs. pens), not in scale.
    size=32 gives the bitmaps the 8x8 images are the 4x4 block means of."""
    return render_printed_digits(n, seed, size=size, normalize_size=True)


# --- networks ---------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """x + conv-IN-ReLU-conv-IN(x), reflection padded (Johnson et al., 2016; CycleGAN's R256)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """CycleGAN's ResNet generator at 8x8: c3s1-w, d2w (to 4x4), R2w x n, u w (to 8x8), c3s1-1."""

    def __init__(self, width: int = 32, res_blocks: int = 4, downsample: bool = True) -> None:
        super().__init__()
        w = width
        if downsample:
            body = [
                nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * w), nn.ReLU(),  # 4x4
                *[ResidualBlock(2 * w) for _ in range(res_blocks)],
                nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1),      # 8x8
                nn.InstanceNorm2d(w), nn.ReLU(),
            ]
        else:
            body = [ResidualBlock(w) for _ in range(res_blocks)]
        self.net = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(1, w, 3), nn.InstanceNorm2d(w), nn.ReLU(),   # 8x8
            *body,
            nn.ReflectionPad2d(1), nn.Conv2d(w, 1, 3), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, 8, 8) in [-1, 1] -> translated images (B, 1, 8, 8) in [-1, 1]."""
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al., 2017): a map of real/fake scores, one per overlapping patch,
    instead of one score per image. Conv4 stride 2 (8 -> 4), conv3 with instance norm, a 1x1
    score: a 4x4 map whose every score sees an 8x8 window of convolutions (`RECEPTIVE_FIELD`),
    part of it zero padding for border scores; instance norm's per-image statistics add a
    little of the whole image. At 8x8 a "patch" is most of a digit: these discriminators judge
    strokes and shapes. No norm on the first layer (as in the paper)."""

    RECEPTIVE_FIELD = 8  # 4, then + (3 - 1) * 2 at stride 2, then 1x1

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),                    # 4x4
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.InstanceNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, 8, 8) -> patch scores (B, 1, 4, 4) (least squares: no sigmoid)."""
        return self.net(x)


class GeneratorPair(nn.Module):
    """The trained result: both generators, saved and reloaded together."""

    def __init__(self, width: int = 32, res_blocks: int = 4, downsample: bool = True) -> None:
        super().__init__()
        self.to_handwritten = Generator(width, res_blocks, downsample)   # G: A (printed) -> B
        self.to_printed = Generator(width, res_blocks, downsample)       # F: B -> A

    def forward(self, x: torch.Tensor, direction: Direction) -> torch.Tensor:
        net = self.to_handwritten if direction == "printed_to_handwritten" else self.to_printed
        return net(x)


class DiscriminatorPair(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.handwritten = PatchDiscriminator(width)   # D_B: is it a real handwritten digit?
        self.printed = PatchDiscriminator(width)       # D_A: is it a real printed digit?


def build_model(cfg: CycleGANConfig) -> GeneratorPair:
    return GeneratorPair(cfg.width, cfg.res_blocks, cfg.downsample)


# --- losses, image pool, schedule -----------------------------------------------------------------

def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """0.5 (E[(D(real) - 1)^2] + E[D(fake)^2]); the paper halves D's objective to slow D."""
    return 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))


def lsgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """E[(D(G(x)) - 1)^2]: the generator wants every patch scored real."""
    return F.mse_loss(d_fake, torch.ones_like(d_fake))


class ImagePool:
    """The last `size` generated images (Shrivastava et al., 2017, section 2.3): until the pool
    is full every image is stored and passed on; then each image, with probability 1/2, is
    swapped for a random stored one (which D sees instead) or passed on unchanged."""

    def __init__(self, size: int, images: torch.Tensor | None = None) -> None:
        self.size = size
        self.images: list[torch.Tensor] = [] if images is None else list(images)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for image in batch.detach():
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand(()) < 0.5:
                i = int(torch.randint(0, self.size, ()))
                out.append(self.images[i])
                self.images[i] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state(self) -> torch.Tensor:
        """(n, 1, 8, 8) stored images, for a checkpoint."""
        return torch.stack(self.images) if self.images else torch.zeros(0, 1, 8, 8)


def lr_factor(step: int, steps: int, decay_start: float) -> float:
    """Learning-rate multiplier after `step` updates: 1 until `decay_start * steps`, then
    linear to 0 at `steps` (Zhu et al., section 4: constant 100 epochs, linear decay 100)."""
    start = int(decay_start * steps)
    if step < start:
        return 1.0
    return max(0.0, (steps - step) / max(1, steps - start))


def semantic_loss(classifier: nn.Module, source: torch.Tensor, translated: torch.Tensor,
                  reader: nn.Module | None = None) -> torch.Tensor:
    """CyCADA's semantic consistency (Hoffman et al., 2018, eq. 4), one direction: cross-entropy
    of the frozen classifier on the translation against the reading of the source, as a hard
    pseudo-label, by `reader` (default: the same classifier). Images (B, 1, 8, 8) in [-1, 1];
    the classifiers read [0, 1]."""
    with torch.no_grad():
        target = (reader or classifier)((source + 1) / 2).argmax(1)      # (B,)
    return F.cross_entropy(classifier((translated + 1) / 2), target)      # grad flows to G only


def _d_loss(disc: PatchDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LSGAN loss of one discriminator on a batch of reals and one of fakes, in one call."""
    d_real, d_fake = disc(torch.cat([real, fake])).split([len(real), len(fake)])
    return lsgan_d_loss(d_real, d_fake)


# --- the training loop ------------------------------------------------------------------------------

Refresh = Callable[[GeneratorPair], nn.Module]


def fit_cyclegan(cfg: CycleGANConfig, ctx: RunContext, printed: torch.Tensor, handwritten: torch.Tensor,
                 classifier: nn.Module | None = None, target_classifier: nn.Module | None = None,
                 refresh: Refresh | None = None) -> tuple[GeneratorPair, list[dict[str, float]]]:
    """Train on two unpaired image sets (N, 1, 8, 8) and (M, 1, 8, 8) in [0, 1] (no labels).
    With `semantic_weight` > 0, `classifier` (f_S, frozen, of printed digits) labels the
    sources and reads F(b); `target_classifier` (f_T, of handwritten digits) reads G(a), or f_S
    does when it is None. After `adapt_refresh_at` of the steps, `refresh(generators)` replaces
    f_T.
    Checkpoint every `checkpoint_every` steps (f_T included), resume from `ctx.checkpoint_dir`."""
    if cfg.semantic_weight > 0 and classifier is None:
        raise ValueError("semantic_weight > 0 needs the source classifier f_S")
    if refresh is not None and target_classifier is None:
        raise ValueError("refresh replaces the target classifier f_T: pass the first one")
    for net in (classifier, target_classifier):
        if net is not None:
            net.eval().requires_grad_(False)                            # frozen, no dropout
    real_a, real_b = 2 * printed - 1, 2 * handwritten - 1          # [-1, 1], like tanh
    gens, discs = build_model(cfg), DiscriminatorPair(cfg.disc_width)
    g_opt = torch.optim.Adam(gens.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    d_opt = torch.optim.Adam(discs.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    pool_a, pool_b = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)
    history: list[dict[str, float]] = []
    start = 0
    if ctx.resume and (ckpt := latest_checkpoint(ctx.checkpoint_dir)) is not None:
        ckpt.load_weights(gens)
        discs.load_state_dict(ckpt.state["discriminators"])
        g_opt.load_state_dict(ckpt.state["g_opt"])
        d_opt.load_state_dict(ckpt.state["d_opt"])
        pool_a = ImagePool(cfg.pool_size, ckpt.state["pool_printed"])
        pool_b = ImagePool(cfg.pool_size, ckpt.state["pool_handwritten"])
        if target_classifier is not None:                               # the f_T of that step
            target_classifier.load_state_dict(ckpt.state["target_classifier"])
        set_rng_state(ckpt.state["rng_tensors"], ckpt.state["rng_plain"])
        history, start = ckpt.state["history"], ckpt.step
    f_t = target_classifier if target_classifier is not None else classifier
    lam, lam_id = cfg.lambda_cycle, cfg.lambda_identity * cfg.lambda_cycle

    keys = ("d_loss", "g_gan", "cycle", "identity", "semantic")
    sums = dict.fromkeys(keys, 0.0)
    with progress(ctx.quiet) as bars:
        task = bars.add_task(ctx.recipe, total=cfg.steps, completed=start, info="")
        for step in range(start + 1, cfg.steps + 1):
            for opt in (g_opt, d_opt):
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * lr_factor(step - 1, cfg.steps, cfg.decay_start)
            # two independent draws: nothing pairs an image of A with one of B
            a = real_a[torch.randint(0, len(real_a), (cfg.batch_size,))]   # (B, 1, 8, 8)
            b = real_b[torch.randint(0, len(real_b), (cfg.batch_size,))]   # (B, 1, 8, 8)

            # Generators: fool both discriminators, come back on a cycle, leave their own
            # domain alone. Instance norm works per image, so stacking several inputs into one
            # call gives the same numbers as separate calls, in 3 calls instead of 6.
            fake_b, idt_b = gens.to_handwritten(torch.cat([a, b])).chunk(2)         # G(a), G(b)
            fake_a, idt_a, rec_a = gens.to_printed(torch.cat([b, a, fake_b])).chunk(3)  # F(b), F(a), F(G(a))
            rec_b = gens.to_handwritten(fake_a)                                     # G(F(b))
            g_gan = lsgan_g_loss(discs.handwritten(fake_b)) + lsgan_g_loss(discs.printed(fake_a))
            cycle = F.l1_loss(rec_a, a) + F.l1_loss(rec_b, b)                       # eq. 2
            identity = F.l1_loss(idt_b, b) + F.l1_loss(idt_a, a)
            semantic = torch.zeros(())
            if cfg.semantic_weight > 0:
                assert classifier is not None
                assert f_t is not None
                semantic = semantic_loss(f_t, a, fake_b, reader=classifier) + semantic_loss(classifier, b, fake_a)
            g_loss = g_gan + lam * cycle + lam_id * identity + cfg.semantic_weight * semantic
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()

            # discriminators: real images against a mix of new and pooled fakes (detached)
            d_loss = (_d_loss(discs.handwritten, b, pool_b.query(fake_b))
                      + _d_loss(discs.printed, a, pool_a.query(fake_a)))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()

            for key, value in zip(keys, (d_loss, g_gan, cycle, identity, semantic), strict=True):
                sums[key] += value.item()
            if step % 100 == 0 or step == cfg.steps:
                count = step % 100 or 100
                row = {"step": float(step), **{k: v / count for k, v in sums.items()}}
                history.append(row)
                ctx.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
                sums = dict.fromkeys(keys, 0.0)
                bars.update(task, info=f"D {row['d_loss']:.3f} cyc {row['cycle']:.3f}")
            if refresh is not None and step == int(cfg.adapt_refresh_at * cfg.steps):
                assert target_classifier is not None   # f_T is updated in place: a checkpoint holds it
                target_classifier.load_state_dict(refresh(gens).state_dict())
                gens.train()                                            # refresh translated in eval mode
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                tensors, plain = rng_state()
                extra = {} if target_classifier is None else {"target_classifier": target_classifier.state_dict()}
                save_checkpoint(ctx.checkpoint_dir, step, gens,
                                {"discriminators": discs.state_dict(), "g_opt": g_opt.state_dict(),
                                 "d_opt": d_opt.state_dict(), "pool_printed": pool_a.state(),
                                 "pool_handwritten": pool_b.state(), "rng_tensors": tensors,
                                 "rng_plain": plain, "history": history, **extra},
                                ctx.config.model_dump(mode="json"))
            bars.update(task, advance=1)
    return gens.eval(), history


# --- using a trained pair ---------------------------------------------------------------------------

@torch.no_grad()
def translate(pair: GeneratorPair, images: torch.Tensor, direction: Direction) -> torch.Tensor:
    """(N, 1, 8, 8) in [0, 1] -> translated (N, 1, 8, 8) in [0, 1]."""
    pair.eval()
    return ((pair(2 * images - 1, direction) + 1) / 2).clamp(0, 1)


def translate_images(run_dir: str | Path, images: torch.Tensor, direction: str) -> torch.Tensor:
    """Translate 8x8 digit images (N, 1, 8, 8) or (N, 8, 8), values in [0, 1], with the
    generators of a `generative.cyclegan` run. Bad input raises InputError."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    recipe = load_model_config(run_dir).get("recipe")
    if recipe != "generative.cyclegan":
        raise InputError(f"{run_dir} is a run of {recipe!r}, not 'generative.cyclegan'")
    if images.dim() == 3:
        images = images[:, None]
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise InputError(f"images must be (N, 1, 8, 8) or (N, 8, 8), got {tuple(images.shape)}")
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise InputError("image values must lie in [0, 1]")
    pair = load_model(run_dir)
    assert isinstance(pair, GeneratorPair)
    return translate(pair, images.float(), direction)  # type: ignore[arg-type]


# --- the recipe -----------------------------------------------------------------------------------

def _translation_grid(pair: GeneratorPair, source: torch.Tensor, direction: Direction,
                      path: Path, title: str) -> None:
    """Rows of 10: source, translated, translated back (the cycle), twice."""
    back: Direction = DIRECTIONS[1 - DIRECTIONS.index(direction)]
    rows = []
    for chunk in source.split(10):
        moved = translate(pair, chunk, direction)
        rows += [chunk, moved, translate(pair, moved, back)]
    save_grid(torch.cat(rows), path, 10, title)


def _curves(history: list[dict[str, float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [row["step"] for row in history]
    for key in ("d_loss", "g_gan", "cycle", "identity", "semantic"):
        if any(row[key] > 0 for row in history):
            ax.plot(steps, [row[key] for row in history], label=key)
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="CycleGAN losses (mean over 100 steps)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(cfg: CycleGANConfig, ctx: RunContext) -> dict[str, float]:
    printed_bitmaps, printed_y = printed_domain(cfg.printed_images, PRINTED_TRAIN_SEED, size=32)
    printed_x = F.avg_pool2d(printed_bitmaps, 4)                          # (N, 1, 8, 8)
    splits = digits_splits()
    started = time.perf_counter()
    # f_S sees the printed digits' labels (source labels, CyCADA), f_T pseudo-labels it made
    # itself on handwritten images; the loop sees images only
    f_s = train_printed_classifier(printed_x, printed_y, SEMANTIC_CLASSIFIER_SEED) if cfg.semantic_weight > 0 else None
    target = None
    if cfg.semantic_weight > 0 and cfg.semantic_target == "adapted":
        target = TargetSide(printed_bitmaps, printed_y, splits["train"].x, seed=cfg.seed,
                            ensemble=cfg.adapt_ensemble, clusters=cfg.adapt_clusters,
                            clusterings=cfg.adapt_clusterings, epochs=cfg.adapt_epochs)

    def refresh(pair: GeneratorPair) -> nn.Module:      # f_T from the current translations G(a)
        assert target is not None
        return target.rebuild(translate(pair, printed_x, "printed_to_handwritten"))

    pair, history = fit_cyclegan(cfg, ctx, printed_x, splits["train"].x, f_s,
                                 target.classifier if target else None,
                                 refresh if target and cfg.adapt_refresh_at > 0 else None)
    train_seconds = time.perf_counter() - started
    ctx.save_model(pair)

    # grading, with labels: a classifier per domain reads the translated digits
    test_printed = printed_domain(890, PRINTED_TEST_SEED)
    metrics = evaluate_translation(
        lambda x: translate(pair, x, "printed_to_handwritten"),
        lambda x: translate(pair, x, "handwritten_to_printed"),
        printed_train=(printed_x, printed_y), printed_test=test_printed,
        handwritten_test=(splits["test"].x, splits["test"].y))
    metrics["train_seconds"] = train_seconds
    if target is not None:   # diagnosis only, after training: how good f_T and its labels were
        metrics["target_classifier_accuracy"] = accuracy(target.classifier, splits["test"].x, splits["test"].y)
        for name, labels in (("first", target.labels[0]), ("last", target.labels[-1])):
            metrics[f"pseudo_label_accuracy_{name}"] = float((labels == splits["train"].y).float().mean())

    _translation_grid(pair, test_printed[0][:20], "printed_to_handwritten",   # labels 0..9 twice
                      ctx.figure_path("printed_to_handwritten.png"),
                      "rows: printed / to handwritten / back to printed")
    hand_idx = torch.cat([(splits["test"].y == c).nonzero().flatten()[:2] for c in range(10)])
    hand_idx = hand_idx.view(10, 2).T.flatten()
    _translation_grid(pair, splits["test"].x[hand_idx], "handwritten_to_printed",
                      ctx.figure_path("handwritten_to_printed.png"),
                      "rows: handwritten / to printed / back to handwritten")
    if history:
        _curves(history, ctx.figure_path("losses.png"))
    return metrics


RECIPE = register(Recipe(
    name="generative.cyclegan",
    step="3",
    topic="GAN: unpaired translation",
    summary="CycleGAN (+ CyCADA's semantic loss) between printed and handwritten 8x8 digits, unpaired.",
    config=CycleGANConfig,
    train=train,
    bar=Bar("identity_kept_p2h", ">=", 0.8, also=(Bar("fd_gain", ">", 0.0),)),
    # quick: the translation must move towards the handwritten digits (an identity map has
    # fd_gain 0, an untrained generator's noise a negative one) without losing the digits
    quick_bar=Bar("identity_kept_p2h", ">=", 0.5, also=(Bar("fd_gain", ">=", 40.0),)),
    budget_s=1200,
    # quick: one printed classifier makes f_T's labels. 600 steps: at 400 this better f_T
    # already reads most untranslated printed digits right and the images had barely moved
    quick={"steps": 600, "printed_images": 1000, "adapt_ensemble": 1, "adapt_epochs": 4},
    build_model=build_model,
))

"""Step 1, transfer learning and fine-tuning, made real offline.

No ImageNet weights can be downloaded here, so the source task is built: printed digits,
rendered from a TrueType font at random sizes, stroke widths, rotations and offsets, then
reduced exactly the way scikit-learn's handwritten digits were made (32x32 bitmaps summed
over 4x4 blocks to 8x8). A torchvision network (`arch`: resnet18, vgg11_bn, efficientnet_b0;
definitions only, weights=None) is pre-trained on them, then adapted to the target task: the
handwritten digits with only 10 labelled images per class. Three ways are compared on the
fixed test split:

- from scratch: the same network trained on the 100 target images alone;
- linear probe: the pre-trained backbone frozen, only a new classifier trained;
- full fine-tuning with discriminative learning rates (each earlier layer group learns at
  `lr_decay` times the rate of the group above it) and gradual unfreezing (one more group
  each epoch, from the top down), as in ULMFiT (Howard & Ruder 2018, sec. 3.2).

`weights=PATH` skips the pre-training and starts from a torchvision state dict a user has
(for example ImageNet weights of the same `arch`).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from aiforge.core import Bar, Recipe, RunContext, SupervisedConfig, register
from aiforge.core.plots import bar_chart
from aiforge.data.digits import digits_splits
from aiforge.data.printed_digits import render_printed_digits
from aiforge.vision.detection import load_weights_file

MODES = ("scratch", "linear_probe", "finetune")
# The smallest input each network learns at (measured here, docs/step1-vision.md): below it
# the feature maps of the last stages vanish or the network does not learn in the budget.
MIN_INPUT = {"resnet18": 16, "vgg11_bn": 32, "efficientnet_b0": 32}
WHY_MIN_INPUT = {
    "resnet18": "its stem and four stages halve the image four times",
    "vgg11_bn": "it halves the image five times with max-pooling",
    "efficientnet_b0": "at 16 px its last four stages see 1x1 maps and it learns half as well",
}


class TransferConfig(SupervisedConfig):
    arch: Literal["resnet18", "vgg11_bn", "efficientnet_b0"] = "resnet18"
    """torchvision network definition (no downloaded weights)."""
    input_size: int | None = Field(32, ge=16, le=224)
    """The 8x8 digits are upsampled to this size for the network; None: the smallest size the
    arch learns at (MIN_INPUT: resnet18 16, vgg11_bn and efficientnet_b0 32), as --quick does."""
    source_images: int = Field(12000, ge=100)
    """Printed digits rendered for pre-training."""
    pretrain_epochs: int = Field(3, ge=1)
    """Passes over the printed digits."""
    per_class: int = Field(10, ge=1, le=50)
    """Labelled handwritten images per class in the target training set."""
    epochs: int = Field(30, ge=1)
    """Passes over the 100 target images, for each of the three ways."""
    batch_size: int = Field(64, ge=1)
    """Images per step (pre-training and adaptation)."""
    lr: float = Field(2e-3, gt=0, le=10)
    """Learning rate of the classifier (AdamW); earlier groups get less when fine-tuning."""
    lr_decay: float = Field(0.5, gt=0, le=1)
    """Discriminative learning rates: each layer group below learns at this times the rate above."""
    weights: str | None = None
    """A torchvision state dict for `arch` to start from instead of pre-training here."""

    @field_validator("input_size")
    @classmethod
    def _size_for_arch(cls, size: int | None, info: ValidationInfo) -> int | None:
        # derived right after parsing: None becomes the arch's smallest working size
        arch = info.data.get("arch")
        if arch is None:  # the arch itself was invalid; that error is reported
            return size
        if size is None:
            return MIN_INPUT[arch]
        if size < MIN_INPUT[arch]:
            raise ValueError(f"{arch} needs input_size >= {MIN_INPUT[arch]}: {WHY_MIN_INPUT[arch]}")
        return size

    @property
    def size(self) -> int:
        """The input side, resolved (never None after parsing)."""
        assert self.input_size is not None
        return self.input_size

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, path: str | None) -> str | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"weights file not found: {path}")
        return path


def few_labels(x: torch.Tensor, y: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` images of every class (the split order is fixed, not --seed)."""
    keep = torch.cat([(y == c).nonzero().flatten()[:per_class] for c in range(10)])
    return x[keep], y[keep]


# --- networks and their layer groups ---------------------------------------------------------

def build_model(cfg: TransferConfig) -> nn.Module:
    """The torchvision network with 10 outputs. VGG's 4096-wide classifier (120 M parameters
    for 7x7 ImageNet features) becomes one linear layer on pooled features; EfficientNet gets
    an initialisation that trains from scratch in a few hundred steps (`init_efficientnet`)."""
    from torchvision import models

    model = getattr(models, cfg.arch)(weights=None, num_classes=10)
    if cfg.arch == "vgg11_bn":
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, 10))
    if cfg.arch == "efficientnet_b0":
        init_efficientnet(model)
    return model


def init_efficientnet(model: nn.Module) -> None:
    """Two changes to torchvision's EfficientNet initialisation, without which it stays at
    chance accuracy through the pre-training budget here (measured: 0.10 -> 0.66 source
    accuracy after 84 steps at 32 px):

    1. The classifier: torchvision draws it from U(±1/sqrt(classes)), sized for 1000 ImageNet
       classes. With 10 classes the 1280 pooled features give initial logits of std ~4.6 and a
       loss of 7 instead of ln 10 = 2.3; PyTorch's default Linear init (U(±1/sqrt(1280)))
       starts at chance level instead.
    2. "Zero gamma" (Goyal et al. 2017, sec. 5.1): the last BatchNorm of every residual MBConv
       block starts with scale 0, so each of the nine residual blocks starts as the identity
       and the network first trains as a shallow one, deepening as the scales grow."""
    from torchvision.models.efficientnet import MBConv

    head(model, "efficientnet_b0").reset_parameters()
    for block in model.modules():
        if isinstance(block, MBConv) and block.use_res_connect:
            last_bn = block.block[-1][1]       # the projection conv's BatchNorm, no activation
            nn.init.zeros_(last_bn.weight)


def layer_groups(model: nn.Module, arch: str) -> list[nn.Module]:
    """The network cut into groups from the input to the classifier (the last group)."""
    if arch == "resnet18":
        m = model
        return [nn.ModuleList([m.conv1, m.bn1]), m.layer1, m.layer2, m.layer3, m.layer4, m.fc]
    if arch == "vgg11_bn":
        f = model.features  # split after every max-pool: five blocks
        cuts = [0] + [i + 1 for i, layer in enumerate(f) if isinstance(layer, nn.MaxPool2d)]
        return [f[a:b] for a, b in pairwise(cuts)] + [model.classifier]
    f = model.features  # efficientnet: stem + 7 stages + head conv, in four groups
    return [f[0:2], f[2:4], f[4:6], f[6:9], model.classifier]


def head(model: nn.Module, arch: str) -> nn.Linear:
    """The final linear layer (the classifier a new task replaces)."""
    linears = [m for m in layer_groups(model, arch)[-1].modules() if isinstance(m, nn.Linear)]
    return linears[-1]


def reset_head(model: nn.Module, arch: str) -> None:
    head(model, arch).reset_parameters()


# --- training --------------------------------------------------------------------------------

def prepare(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, 8, 8) -> (N, 3, size, size): upsampled, grey to RGB, roughly standardised."""
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return ((up - 0.3) / 0.4).expand(-1, 3, -1, -1)


def shift(x: torch.Tensor) -> torch.Tensor:
    """Random translation by up to 1/8 of the image (one 8x8 pixel), zero fill."""
    pad = x.shape[-1] // 8
    padded = F.pad(x, [pad] * 4)
    dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    return padded[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


def run_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int,
               optimizer: torch.optim.Optimizer, on_epoch: Callable[[int], None] | None = None,
               frozen_bn: bool = False) -> list[float]:
    """AdamW steps under a one-cycle schedule with random shifts, then precise BatchNorm
    statistics; `frozen_bn` keeps BatchNorm in eval mode (a frozen backbone keeps its
    statistics too)."""
    losses = []
    steps = epochs * max(1, (len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=steps)
    for epoch in range(epochs):
        if on_epoch is not None:
            on_epoch(epoch)
        model.train(not frozen_bn)
        order = torch.randperm(len(x))
        for idx in order.split(batch):
            loss = F.cross_entropy(model(shift(x[idx])), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    if not frozen_bn:
        precise_batchnorm(model, x[:PRECISE_BN_IMAGES], batch)
    return losses


PRECISE_BN_IMAGES = 4096


@torch.no_grad()
def precise_batchnorm(model: nn.Module, x: torch.Tensor, batch: int) -> None:
    """PreciseBN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", sec. 3): replace
    BatchNorm's running statistics by their plain average over training batches under the
    final weights. The running statistics are an EMA (momentum 0.1) that after k steps still
    weighs the first batch by 0.9^k: after the few dozen steps of a small-data run, the
    exploding activations of EfficientNet's first steps dominate it and the network in eval
    mode predicts one class (measured: 0.10 accuracy in eval mode, 0.42 in train mode and
    after this)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # None: a cumulative average over the batches that follow
    model.train()
    for chunk in x.split(batch):
        model(chunk)
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((torch.cat([model(c) for c in x.split(256)]).argmax(1) == y).float().mean())


def adapt(mode: str, start: dict[str, torch.Tensor] | None, cfg: TransferConfig,
          x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """One of the three ways to reach the target task; `start` is the pre-trained state."""
    model = build_model(cfg)
    if mode == "scratch":
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        run_epochs(model, x, y, cfg.epochs, cfg.batch_size, optimizer)
        return model
    assert start is not None
    model.load_state_dict(start)
    reset_head(model, cfg.arch)  # a new classifier for the new task
    groups = layer_groups(model, cfg.arch)
    if mode == "linear_probe":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head(model, cfg.arch).parameters():
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(head(model, cfg.arch).parameters(), lr=cfg.lr)
        run_epochs(model, x, y, cfg.epochs, cfg.batch_size, optimizer, frozen_bn=True)
        return model
    # full fine-tuning: group k of n learns at lr * decay^(n-1-k); groups thaw top-down
    n = len(groups)
    optimizer = torch.optim.AdamW(
        [{"params": g.parameters(), "lr": cfg.lr * cfg.lr_decay ** (n - 1 - k)}
         for k, g in enumerate(groups)], weight_decay=cfg.weight_decay)

    def unfreeze(epoch: int) -> None:
        for k, g in enumerate(groups):
            g.requires_grad_(k >= n - 1 - epoch)

    run_epochs(model, x, y, cfg.epochs, cfg.batch_size, optimizer, on_epoch=unfreeze)
    return model


def train(cfg: TransferConfig, ctx: RunContext) -> dict[str, float]:
    splits = digits_splits()
    x_few, y_few = few_labels(splits["train"].x, splits["train"].y, cfg.per_class)
    x_target, x_test = prepare(x_few, cfg.size), prepare(splits["test"].x, cfg.size)
    y_test = splits["test"].y
    metrics: dict[str, float] = {}

    pretrained = build_model(cfg)
    if cfg.weights is not None:
        load_weights_file(pretrained, cfg.weights)
    else:
        xs, ys = render_printed_digits(cfg.source_images, seed=cfg.seed)
        xs = prepare(xs, cfg.size)
        n_val = max(50, len(xs) // 10)
        optimizer = torch.optim.AdamW(pretrained.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        losses = run_epochs(pretrained, xs[n_val:], ys[n_val:], cfg.pretrain_epochs, cfg.batch_size, optimizer)
        for step, loss in enumerate(losses[::10]):
            ctx.log_metrics({"pretrain_loss": loss}, step=10 * step)
        metrics["source_val_accuracy"] = accuracy(pretrained, xs[:n_val], ys[:n_val])
    start = {k: v.clone() for k, v in pretrained.state_dict().items()}

    models = {}
    for mode in MODES:
        models[mode] = adapt(mode, start, cfg, x_target, y_few)
        metrics[f"acc_{mode}"] = accuracy(models[mode], x_test, y_test)
    metrics["gain_points"] = 100 * (metrics["acc_finetune"] - metrics["acc_scratch"])
    bar_chart({m: metrics[f"acc_{m}"] for m in MODES}, ctx.figure_path("transfer_comparison.png"),
              "test accuracy", f"{cfg.arch}: {cfg.per_class} labels per class")
    table = ctx.out / "figures" / "transfer_table.md"
    table.write_text("| way | test accuracy |\n|---|---|\n" + "".join(
        f"| {m} | {metrics[f'acc_{m}']:.4f} |\n" for m in MODES))
    ctx.add_artifact(table)
    ctx.save_model(models["finetune"])
    return metrics


RECIPE = register(Recipe(
    name="vision.transfer",
    step="1",
    topic="CNNs: transfer learning",
    summary="Pre-train a torchvision CNN on printed digits, adapt it to 10 handwritten digits per class.",
    config=TransferConfig,
    train=train,
    bar=Bar("gain_points", ">=", 5.0),
    quick_bar=Bar("acc_finetune", ">=", 0.7),
    budget_s=600,
    quick={"input_size": None, "source_images": 3000, "pretrain_epochs": 2, "epochs": 15},
    build_model=build_model,
))

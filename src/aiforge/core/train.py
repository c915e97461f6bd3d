"""The supervised training loop every supervised recipe uses.

`fit` trains for `cfg.epochs` epochs, evaluates after each, checkpoints after each (so a
killed run resumes to the same numbers), stops early when the monitored metric stops
improving, and leaves the model holding its best weights. The recipe supplies the model,
the data, the loss and the evaluation; the loop supplies everything else.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from aiforge.core.checkpoint import latest_checkpoint, save_checkpoint
from aiforge.core.config import ConfigError, RecipeConfig
from aiforge.core.context import RunContext
from aiforge.core.device import pick_device
from aiforge.core.progress import progress
from aiforge.core.seeding import rng_state, set_rng_state

Batch = Any
LossFn = Callable[[nn.Module, Batch], torch.Tensor]
EvalFn = Callable[[nn.Module], dict[str, float]]


class SupervisedConfig(RecipeConfig):
    """Fields shared by every recipe trained with `fit`."""

    length_fields: ClassVar[tuple[str, ...]] = ("epochs",)

    epochs: int = Field(10, ge=1)
    """Number of passes over the training set."""
    batch_size: int = Field(64, ge=1)
    """Examples per optimisation step."""
    lr: float = Field(1e-3, gt=0, le=10)
    """Peak learning rate."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (AdamW)."""
    schedule: Literal["constant", "cosine", "onecycle"] = "cosine"
    """Learning-rate schedule, stepped every batch."""
    warmup_fraction: float = Field(0.0, ge=0, lt=1)
    """Fraction of all steps spent warming the learning rate up linearly (cosine only)."""
    grad_clip: float | None = Field(None, gt=0)
    """Clip the global gradient norm to this value; None turns clipping off."""
    amp: bool = False
    """bfloat16 mixed precision; only on CUDA."""
    device: str = "auto"
    """'auto' (CUDA where present, else CPU), 'cpu' or 'cuda[:N]'."""
    patience: int | None = Field(None, ge=1)
    """Stop after this many epochs without improvement of the monitored metric."""
    checkpoint_every: int = Field(1, ge=1)
    """Write a resumable checkpoint every this many epochs (and after the last); raise it
    for large models, where each checkpoint costs seconds."""


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_value: float
    stopped_early: bool


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SupervisedConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps)
    warmup = int(cfg.warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress_ = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _resumed_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SupervisedConfig,
    scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any], total_steps: int,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule of a resumed run. An extended run (more epochs than when it was saved)
    keeps its position, and a one-cycle schedule, whose length is part of its state, is laid
    out again over the new length; the cosine one reads the length from `cfg` already."""
    if state.get("total_steps", total_steps) == total_steps:
        scheduler.load_state_dict(state)
        return scheduler
    fresh = make_scheduler(optimizer, cfg, total_steps)
    with warnings.catch_warnings():  # stepping a schedule without an optimizer step warns
        warnings.simplefilter("ignore")
        for _ in range(int(state["last_epoch"])):
            fresh.step()
    return fresh


def to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _improved(value: float, best: float, mode: str) -> bool:
    return value > best if mode == "max" else value < best


def fit(
    model: nn.Module,
    train_data: Iterable[Batch],
    *,
    loss_fn: LossFn,
    evaluate: EvalFn,
    cfg: SupervisedConfig,
    ctx: RunContext,
    optimizer: torch.optim.Optimizer,
    monitor: str,
    mode: Literal["max", "min"] = "max",
) -> FitResult:
    """Train `model` in place and return the per-epoch history.

    `loss_fn(model, batch)` returns the scalar loss of one batch already on the device;
    `evaluate(model)` returns metrics (it is called in eval mode, without gradients) and
    must contain `monitor`.
    """
    device = pick_device(cfg.device)
    if cfg.amp and device.type != "cuda":
        raise ConfigError("amp=true needs a CUDA device; set amp=false on the CPU")
    model.to(device)
    steps_per_epoch = len(train_data)  # type: ignore[arg-type]
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    best_value = -math.inf if mode == "max" else math.inf
    best_epoch, best_weights = 0, {k: v.detach().clone() for k, v in model.state_dict().items()}
    start_epoch = 1

    if ctx.resume and (ckpt := latest_checkpoint(ctx.checkpoint_dir)) is not None:
        ckpt.load_weights(model)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        scheduler = _resumed_scheduler(optimizer, cfg, scheduler, ckpt.state["scheduler"],
                                       cfg.epochs * steps_per_epoch)
        set_rng_state(ckpt.state["rng_tensors"], ckpt.state["rng_plain"])
        history = ckpt.state["history"]
        best_value, best_epoch = ckpt.state["best_value"], ckpt.state["best_epoch"]
        best_weights = ckpt.state["best_weights"]
        start_epoch = ckpt.step + 1

    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp else nullcontext()
    )
    stopped_early = False
    with progress(ctx.quiet) as bars:
        epochs_task = bars.add_task(ctx.recipe, total=cfg.epochs, completed=start_epoch - 1, info="")
        for epoch in range(start_epoch, cfg.epochs + 1):
            if _patience_spent(history, best_epoch, cfg.patience):
                stopped_early = True
                break
            started = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            batch_task = bars.add_task(f"epoch {epoch}", total=steps_per_epoch, info="")
            for batch in train_data:
                batch = to_device(batch, device)
                with autocast:
                    loss = loss_fn(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                total += loss.item()
                count += 1
                bars.update(batch_task, advance=1, info=f"loss {total / count:.4f}")
            bars.remove_task(batch_task)

            model.eval()
            with torch.no_grad(), autocast:
                metrics = evaluate(model)
            if monitor not in metrics:
                raise KeyError(f"evaluate() returned {sorted(metrics)}, which lacks {monitor!r}")
            row: dict[str, float] = {
                "epoch": epoch, "train_loss": total / max(count, 1),
                "lr": float(scheduler.get_last_lr()[0]), **metrics,
                   "seconds": time.perf_counter() - started}
            history.append(row)
            ctx.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            if _improved(metrics[monitor], best_value, mode):
                best_value, best_epoch = metrics[monitor], epoch
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if epoch % cfg.checkpoint_every and epoch != cfg.epochs:
                bars.update(epochs_task, advance=1, info=f"{monitor} {metrics[monitor]:.4f}")
                continue
            tensors, plain = rng_state()
            save_checkpoint(
                ctx.checkpoint_dir, epoch, model,
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng_tensors": tensors, "rng_plain": plain, "history": history,
                 "best_value": best_value, "best_epoch": best_epoch, "best_weights": best_weights},
                ctx.config.model_dump(mode="json"),
            )
            bars.update(epochs_task, advance=1,
                        info=f"{monitor} {metrics[monitor]:.4f} (best {best_value:.4f})")

    model.load_state_dict(best_weights)
    return FitResult(history, best_epoch, float(best_value), stopped_early)


def _patience_spent(history: Sequence[dict[str, float]], best_epoch: int, patience: int | None) -> bool:
    return patience is not None and bool(history) and history[-1]["epoch"] - best_epoch >= patience

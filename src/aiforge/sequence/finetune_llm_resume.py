"""Resumable LoRA training for `sequence.finetune-llm`: what a checkpoint holds, and how a
stopped run continues from one to the same numbers as a run that never stopped.

A checkpoint is core's (aiforge.core.checkpoint: written atomically, checksummed, safetensors
and JSON, nothing pickled) and holds only what training changes:

- the LoRA weights alone (`AdapterWeights`): 9.8 MB for SmolLM2 at r = 8, where the frozen
  135 M-parameter base would be 540 MB. The base is loaded again from its source on resume;
- AdamW's two moments and step counts, and the learning-rate schedule's position;
- every global RNG (torch, numpy, python), which LoRA dropout draws from;
- the per-step task losses (the loss figure) and the seconds trained so far;
- the position in the batch order: the step. The order is a pure function of the seed
  (`mixed_batches` draws from generators of its own), so a resumed run draws it again and
  skips the batches already trained on instead of storing generator states.

The rest (the data, the base model, the base's rehearsal answers) the resumed run rebuilds
exactly as the first run built it. A fingerprint of every token id and label trained on is
stored too, so that a data file edited or a base model changed in between is one clear error,
not adapters silently continued on something else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from aiforge.core.checkpoint import CheckpointError, latest_checkpoint, save_checkpoint
from aiforge.core.context import RunContext
from aiforge.core.seeding import rng_state, set_rng_state
from aiforge.sequence.finetune_llm_encode import Example

SEP = "/"  # stands for '.' in a parameter name, which a module attribute may not contain


class AdapterWeights(nn.Module):
    """The trainable (LoRA) parameters of a peft model as a module of their own. It holds the
    very same Parameter objects, so saving it writes the adapters alone and loading a
    checkpoint into it writes the weights back into the model, in place."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name, param in model.named_parameters():
            if param.requires_grad:
                self.register_parameter(name.replace(".", SEP), param)


@dataclass
class LoopState:
    """What the training loop carries from step to step besides weights and optimizer."""

    step: int = 0
    """Optimisation steps done, which is also the position in the batch order."""
    losses: list[float] = field(default_factory=list)
    """Task loss of every step done."""
    seconds: float = 0.0
    """Seconds spent in training steps, over every part of an interrupted run."""


def data_fingerprint(examples: Sequence[Example], rehearsal: Sequence[Example]) -> str:
    """SHA-256 of the token ids and labels of every task and rehearsal example, in order."""
    rows = [[[e.ids, e.labels] for e in examples], [[e.ids, e.labels] for e in rehearsal]]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def save_training(ctx: RunContext, state: LoopState, adapters: AdapterWeights,
                  optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                  fingerprint: str) -> None:
    """A resumable checkpoint after `state.step` steps."""
    tensors, plain = rng_state()
    save_checkpoint(ctx.checkpoint_dir, state.step, adapters,
                    {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "rng_tensors": tensors, "rng_plain": plain, "losses": state.losses,
                     "seconds": state.seconds, "data_sha256": fingerprint},
                    ctx.config.model_dump(mode="json"))


def resume_training(ctx: RunContext, adapters: AdapterWeights, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, fingerprint: str) -> LoopState:
    """A fresh state for a new run. For a resumed one (`ctx.resume`): the newest checkpoint's
    adapters, optimizer, schedule and RNGs put back in place, and its state returned."""
    if not ctx.resume or (ckpt := latest_checkpoint(ctx.checkpoint_dir)) is None:
        return LoopState()
    if ckpt.state["data_sha256"] != fingerprint:
        raise CheckpointError(f"checkpoint {ckpt.path} was trained on other examples than this "
                              "run builds: the data file or the base model changed since")
    ckpt.load_weights(adapters)  # raises CheckpointError when names or shapes do not fit
    optimizer.load_state_dict(ckpt.state["optimizer"])
    scheduler.load_state_dict(ckpt.state["scheduler"])
    set_rng_state(ckpt.state["rng_tensors"], ckpt.state["rng_plain"])
    return LoopState(step=ckpt.step, losses=list(ckpt.state["losses"]),
                     seconds=float(ckpt.state["seconds"]))

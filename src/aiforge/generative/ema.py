"""An exponential moving average (EMA) of a network's weights, the copy a diffusion model samples with.

After every optimiser step n (counting from 0) each parameter of the copy moves towards the
trained network's,

    ema <- d_n * ema + (1 - d_n) * theta,      d_n = min(decay, (1 + n) / (10 + n)),

DDPM (Ho et al., 2020, appendix B) samples with an EMA of decay 0.9999 over 800k steps. The
warm-up d_n is TensorFlow's `ExponentialMovingAverage(num_updates=n)` rule, which DDPM's own
code used: early on the copy follows the network closely instead of staying near the random
initialisation for ~1/(1 - decay) steps. Over the few thousand steps of a CPU run the warm-up
term is the smaller one for most of training, so the average weights the last ~10% of the
steps most (d_n = 1 - 9/(10 + n) gives step k a weight growing like k^8).

The copy is a submodule and the update count a buffer, so both live in the wrapper's
`state_dict`: a checkpoint of the wrapper holds them and a resumed run continues the same
average bit for bit.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, updates: int) -> float:
    """d_n = min(decay, (1 + n) / (10 + n)) for the n-th update (n counts from 0)."""
    return min(decay, (1 + updates) / (10 + updates))


class EMA(nn.Module):
    """A frozen copy of `model` whose weights track an exponential moving average of its own."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = ema_decay_at(self.decay, int(self.updates))
        for avg, new in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.mul_(d).add_(new.detach(), alpha=1 - d)
        # buffers (none in the UNet; batch-norm statistics elsewhere) are copied, not averaged
        for avg, new in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(new)
        self.updates += 1

    def train(self, mode: bool = True) -> EMA:
        # the copy only ever samples and evaluates: keep its dropout off whatever the parent does
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(*args)  # type: ignore[no-any-return]

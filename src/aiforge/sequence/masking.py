"""BERT's masked-language-model corruption (Devlin et al., 2019, section 3.1 and appendix A.1).

Each maskable position is selected with probability p (0.15). A selected token becomes

    [MASK]           with probability 0.8,
    a random token   with probability 0.1,
    itself           with probability 0.1,

and the model must predict the original token at every selected position (and only there).
The 10% random and 10% unchanged cases matter: [MASK] never occurs at fine-tuning time, so a
model trained on [MASK] alone would learn nothing useful about the representations of real,
visible tokens; keeping some selected tokens visible (and making some visible tokens wrong)
forces it to model every position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100   # F.cross_entropy's default ignore_index: positions that carry no MLM loss


@dataclass(frozen=True)
class MaskedBatch:
    inputs: torch.Tensor    # (B, T) corrupted ids the encoder sees
    labels: torch.Tensor    # (B, T) original ids where selected, IGNORE elsewhere


def mask_tokens(ids: torch.Tensor, *, mask_id: int, n_real: int, maskable: torch.Tensor | None = None,
                select_prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
                generator: torch.Generator | None = None) -> MaskedBatch:
    """Corrupt ids (B, T) for MLM. `maskable` (B, T) bool excludes positions (padding) from
    selection; random replacements are drawn uniformly from the real ids [0, n_real).
    `generator` None draws from torch's global RNG."""
    if not 0 < select_prob < 1 or mask_frac + random_frac > 1:
        raise ValueError(f"bad masking rates: select {select_prob}, mask {mask_frac}, random {random_frac}")
    u = torch.rand(ids.shape, generator=generator)                  # (B, T) selection draw
    selected = u < select_prob
    if maskable is not None:
        selected &= maskable
    # One more uniform draw per position splits the selected ones 80 / 10 / 10.
    r = torch.rand(ids.shape, generator=generator)                  # (B, T)
    to_mask = selected & (r < mask_frac)
    to_random = selected & (r >= mask_frac) & (r < mask_frac + random_frac)
    random_ids = torch.randint(0, n_real, ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = random_ids[to_random]
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    return MaskedBatch(inputs, labels)

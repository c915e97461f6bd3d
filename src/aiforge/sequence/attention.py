"""Scaled dot-product attention and causal multi-head self-attention, with a KV cache.

Attention (Vaswani et al., 2017, eq. 1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

M is 0 where a query may look and -inf where it may not. Two kinds of "may not" are used:
causal (a token sees only itself and the past, which makes next-token training possible on
all positions at once) and padding (keys that are filler in a batch of unequal lengths).
The tests check this function against torch.nn.functional.scaled_dot_product_attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


def causal_mask(q_len: int, k_len: int, device: torch.device | None = None) -> torch.Tensor:
    """(Tq, Tk) bool, True where query i may see key j.

    The queries are the last `q_len` positions of the `k_len` keys (bottom-right aligned), so
    with a KV cache the one new query at position k_len-1 sees every cached key; with
    q_len == k_len this is the usual lower triangle."""
    offset = k_len - q_len
    rows = torch.arange(q_len, device=device)[:, None] + offset      # absolute query position
    cols = torch.arange(k_len, device=device)[None, :]
    return cols <= rows


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
    causal: bool = False, mask: torch.Tensor | None = None, dropout: float = 0.0,
) -> torch.Tensor:
    """q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> (..., Tq, dv).

    `mask` is bool and broadcasts to (..., Tq, Tk): True keeps a score, False removes it (the
    convention of F.scaled_dot_product_attention's boolean attn_mask). A query row must keep
    at least one key."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])     # (..., Tq, Tk)
    keep = None
    if causal:
        keep = causal_mask(q.shape[-2], k.shape[-2], q.device)
    if mask is not None:
        keep = mask if keep is None else keep & mask
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)                        # (..., Tq, Tk), rows sum to 1
    if dropout > 0:
        weights = nn.functional.dropout(weights, p=dropout)
    return weights @ v                                             # (..., Tq, dv)


@dataclass
class KVCache:
    """Keys and values of every layer for the tokens seen so far: generation then feeds one
    new token per step instead of the whole prefix (O(T) work per token instead of O(T^2))."""

    keys: list[torch.Tensor] = field(default_factory=list)     # per layer (B, nh, T, hs)
    values: list[torch.Tensor] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.keys[0].shape[-2] if self.keys else 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v (B, nh, t, hs) to layer `layer`; return the full ones."""
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=-2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=-2)
        return self.keys[layer], self.values[layer]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: n_head heads of width d/n_head attend in parallel and
    an output projection mixes them (Vaswani et al., 2017, section 3.2.2)."""

    def __init__(self, d_model: int, n_head: int, dropout: float = 0.0, use_sdpa: bool = False) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} is not divisible by n_head {n_head}")
        self.n_head, self.dropout, self.use_sdpa = n_head, dropout, use_sdpa
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                padding: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d). `padding` (B, T_total) bool marks real (True) key tokens."""
        b, t, d = x.shape
        hs = d // self.n_head
        q, k, v = self.qkv(x).split(d, dim=2)                             # each (B, T, d)
        q = q.view(b, t, self.n_head, hs).transpose(1, 2)                 # (B, nh, T, hs)
        k = k.view(b, t, self.n_head, hs).transpose(1, 2)
        v = v.view(b, t, self.n_head, hs).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, k, v)                              # (B, nh, T_total, hs)
        mask = None if padding is None else padding[:, None, None, :]     # (B, 1, 1, T_total)
        p = self.dropout if self.training else 0.0
        if self.use_sdpa and mask is None and k.shape[-2] == t:
            # The library kernel (same numbers, fused and faster); only where its top-left
            # causal alignment equals ours, i.e. without a cache prefix.
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            y = scaled_dot_product_attention(q, k, v, causal=True, mask=mask, dropout=p)
        y = y.transpose(1, 2).contiguous().view(b, t, d)                  # (B, T, d): heads side by side
        return self.resid_dropout(self.proj(y))

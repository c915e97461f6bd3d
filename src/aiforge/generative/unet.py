"""A small UNet that predicts the noise eps in x_t, sized for 8x8 digits.

The parts of Ho et al. (2020), appendix B, at small scale: a sinusoidal embedding of the
timestep (Vaswani et al., 2017, section 3.5) through an MLP, residual blocks with group norm
whose hidden activations are shifted by that embedding, self-attention at the low
resolutions only (4x4 and 2x2 here; it is quadratic in pixels), and skip connections from
each encoder level to the decoder level of the same size.

Class conditioning for classifier-free guidance (Ho & Salimans, 2022): a learned class
embedding is added to the time embedding; index `classes` is the "no label" token, used for
the unconditional half of guidance and for the labels dropped during training.

    8x8:  in-conv -> Res(c) ------------------------------------------> cat -> Res(c) -> out
    4x4:        down -> Res(2c) + Attn ------------------------> cat -> Res(2c) + Attn -> up
    2x2:              down -> Res(2c) -> [Res, Attn, Res] -> cat -> Res(2c) -> up
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps: (B,) -> (B, dim), [sin | cos] halves with
    frequencies from 1 down to 1/max_period."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]             # (B, half)
    return torch.cat([args.sin(), args.cos()], dim=1)   # (B, dim)


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """GN-SiLU-conv, add the projected embedding, GN-SiLU-dropout-conv, plus a skip path."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.block1 = nn.Sequential(norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, c_out))
        self.block2 = nn.Sequential(norm(c_out), nn.SiLU(), nn.Dropout(dropout),
                                    nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)                              # (B, c_out, H, W)
        h = h + self.emb(emb)[:, :, None, None]         # the timestep (and class) enter here
        return self.skip(x) + self.block2(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, residual."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm = norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).view(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))   # each (B, nh, HW, hs)
        out = F.scaled_dot_product_attention(q, k, v)                # (B, nh, HW, hs)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class UNet(nn.Module):
    def __init__(self, width: int = 64, classes: int = 10, dropout: float = 0.1,
                 in_channels: int = 1) -> None:
        super().__init__()
        c, emb_dim = width, 4 * width
        self.width, self.classes = width, classes
        self.time_mlp = nn.Sequential(nn.Linear(c, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(classes + 1, emb_dim)   # last index = no label
        self.inp = nn.Conv2d(in_channels, c, 3, padding=1)
        self.enc1 = ResBlock(c, c, emb_dim, dropout)                              # 8x8
        self.down1 = nn.Conv2d(c, c, 3, stride=2, padding=1)                      # 8 -> 4
        self.enc2, self.attn2 = ResBlock(c, 2 * c, emb_dim, dropout), SelfAttention(2 * c)
        self.down2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)              # 4 -> 2
        self.enc3 = ResBlock(2 * c, 2 * c, emb_dim, dropout)
        self.mid1, self.mid_attn = ResBlock(2 * c, 2 * c, emb_dim, dropout), SelfAttention(2 * c)
        self.mid2 = ResBlock(2 * c, 2 * c, emb_dim, dropout)
        self.dec3 = ResBlock(4 * c, 2 * c, emb_dim, dropout)                      # 2x2
        self.dec2, self.attn_dec2 = ResBlock(4 * c, 2 * c, emb_dim, dropout), SelfAttention(2 * c)
        self.dec1 = ResBlock(3 * c, c, emb_dim, dropout)                          # 8x8
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Sequential(norm(c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # start by predicting eps = 0: a calm first step
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, C, 8, 8), t (B,), class labels y (B,) with `classes` for none -> eps (B, C, 8, 8)."""
        if y is None:
            y = torch.full_like(t, self.classes)
        emb = self.time_mlp(timestep_embedding(t, self.width)) + self.class_emb(y)   # (B, 4c)
        h1 = self.enc1(self.inp(x), emb)                                 # (B, c, 8, 8)
        h2 = self.attn2(self.enc2(self.down1(h1), emb))                  # (B, 2c, 4, 4)
        h3 = self.enc3(self.down2(h2), emb)                              # (B, 2c, 2, 2)
        h = self.mid2(self.mid_attn(self.mid1(h3, emb)), emb)            # (B, 2c, 2, 2)
        h = self.up(self.dec3(torch.cat([h, h3], 1), emb))               # (B, 2c, 4, 4)
        h = self.up(self.attn_dec2(self.dec2(torch.cat([h, h2], 1), emb)))  # (B, 2c, 8, 8)
        h = self.dec1(torch.cat([h, h1], 1), emb)                        # (B, c, 8, 8)
        return self.out(h)

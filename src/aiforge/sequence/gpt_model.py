"""A decoder-only transformer (GPT; Radford et al., 2018/2019), written part by part.

    tokens -> token embedding + learned position embedding
           -> n_layer x Block:  x = x + Attn(LN(x));  x = x + MLP(LN(x))     (pre-LayerNorm)
           -> LN -> linear head whose weight IS the token embedding (weight tying)

Pre-LayerNorm (GPT-2; Xiong et al., 2020) keeps a clean residual path from the loss to every
layer, so training is stable without warm-up tricks. Weight tying (Press and Wolf, 2017)
shares the input and output embeddings: fewer parameters and a better model at this size.
Generation keeps a KV cache and samples with temperature, top-k and top-p (nucleus;
Holtzman et al., 2020).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from aiforge.sequence.attention import CausalSelfAttention, KVCache


class MLP(nn.Module):
    """Position-wise feed-forward: d -> 4d -> GELU -> d."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, 4 * d_model)
        self.down = nn.Linear(4 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float, use_sdpa: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, dropout, use_sdpa)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)                 # (B, T, d)
        return x + self.mlp(self.ln2(x))


def gpt2_init(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the residual output
    projections scaled by 1/sqrt(2 * n_layer) so the residual stream's variance does not grow
    with depth."""

    def init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    model.apply(init)
    for name, param in model.named_parameters():
        if name.endswith(("attn.proj.weight", "mlp.down.weight")):
            nn.init.normal_(param, std=0.02 / math.sqrt(2 * n_layer))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int,
                 d_model: int, dropout: float = 0.0, use_sdpa: bool = False) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_head, dropout, use_sdpa) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight                       # weight tying
        gpt2_init(self, n_layer)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V). With a cache, idx holds only new tokens."""
        past = cache.length if cache is not None else 0
        t = idx.shape[1]
        if past + t > self.block_size:
            raise ValueError(f"{past + t} positions exceed the context of {self.block_size}")
        pos = torch.arange(past, past + t, device=idx.device)         # (T,)
        x = self.dropout(self.tok_emb(idx) + self.pos_emb(pos))       # (B, T, d)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        return self.head(self.ln_f(x))                                # (B, T, V)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend idx (B, T) by `max_new_tokens` sampled tokens -> (B, T + max_new_tokens)."""
        new = list(self.stream(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                               top_p=top_p, use_cache=use_cache, generator=generator))
        return torch.cat([idx, *new], dim=1)

    @torch.no_grad()
    def stream(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
               generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Yield one sampled token (B, 1) at a time after the prompt idx (B, T).

        Past the context window the model sees the last block_size tokens; learned absolute
        positions cannot shift a cache, so there the cache is rebuilt from that window, which
        gives exactly the tokens that generation without a cache gives."""
        cache: KVCache | None = None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits = self(idx[:, -self.block_size:])[:, -1]       # (B, V)
            elif cache is None or cache.length + 1 > self.block_size:
                cache = KVCache()
                logits = self(idx[:, -self.block_size:], cache)[:, -1]  # prefill the window
            else:
                logits = self(idx[:, -1:], cache)[:, -1]              # one new token
            nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)
            yield nxt


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from logits (B, V) -> (B, 1). temperature 0 is greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]   # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        # Nucleus: keep the smallest set of most likely tokens whose mass reaches top_p.
        sorted_logits, order = torch.sort(logits, descending=True)           # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs                           # mass of better tokens
        drop_sorted = mass_before >= top_p                                   # the first token stays
        drop = drop_sorted.scatter(1, order, drop_sorted)                    # back to vocab order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)

"""An encoder-decoder transformer in the style of T5 (Raffel et al., 2020), part by part.

    source ids -> shared embedding -> n_layer x EncoderBlock -> norm -> memory h (B, S, d)
        EncoderBlock:  x = x + SelfAttn(N(x), keep_src, bias_enc);  x = x + MLP(N(x))
    target ids (BOS, y_1, ...) -> shared embedding -> n_layer x DecoderBlock -> norm -> logits
        DecoderBlock:  x = x + CausalSelfAttn(N(x), bias_dec)
                       x = x + CrossAttn(N(x), h, keep_src)       (queries: target, keys: source)
                       x = x + MLP(N(x))

Choices that follow T5, said here because they differ from our GPT and BERT:
- No absolute positions. Every self-attention score gets a learned scalar per head and per
  *bucket* of the relative distance j - i (section 2.1): exact buckets for small distances,
  log-spaced ones up to `max_distance`, one for anything farther. The encoder's buckets tell
  left from right; the decoder's only look back. One table per stack, shared by its layers
  (as T5); cross-attention has none (source and target positions are not comparable).
- Pre-normalisation with RMSNorm (T5's "layer norm without bias or mean subtraction").
- One embedding for source, target and output (T5 shares all three); the output logits are
  scaled by d^-1/2 as T5 does when it ties them.
Kept from our GPT: the 4x GELU MLP (T5 1.0 uses ReLU) and the 1/sqrt(d_k) score scaling (T5
folds it into its initialisation). Ours: the bias tables start at ALiBi's -m_h * distance
(`alibi_init`), a locality prior that our BERT needed to leave its unigram plateau at this
budget; they are learned from there like T5's.

The encoder's padding mask removes pad *keys* from every query of the encoder and of the
cross-attention, so the logits do not depend on how much padding follows a source; the
decoder is causal, so logits at position t do not depend on target tokens after t. The tests
check both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aiforge.data.text_corpus import VOCAB_SIZE
from aiforge.sequence.attention import causal_mask, scaled_dot_product_attention
from aiforge.sequence.gpt_model import MLP

# The 98 characters of the shared character vocabulary, then the special ids.
PAD_ID = VOCAB_SIZE
EOS_ID = VOCAB_SIZE + 1
BOS_ID = VOCAB_SIZE + 2            # the decoder's start token (T5 reuses pad for it)
FIRST_SENTINEL = VOCAB_SIZE + 3
N_SENTINELS = 32
T5_VOCAB = FIRST_SENTINEL + N_SENTINELS


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """Bucket of each relative position j - i (any shape, int) -> same shape, in [0, num_buckets).

    Bidirectional: half the buckets for keys to the right (j > i), half for the rest. In each
    half, the first half of the buckets hold one distance each, the others cover distances
    up to max_distance on a log scale; farther ones share the last bucket."""
    bucket = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        bucket += (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)             # the decoder looks back only
    exact = num_buckets // 2
    log_scaled = exact + (
        torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
        * (num_buckets - exact)
    ).long()
    log_scaled = log_scaled.clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, log_scaled)


class RelativePositionBias(nn.Module):
    """A learned bias per head and relative-position bucket, added to attention scores."""

    def __init__(self, n_head: int, bidirectional: bool, num_buckets: int, max_distance: int) -> None:
        super().__init__()
        self.bidirectional, self.num_buckets, self.max_distance = bidirectional, num_buckets, max_distance
        self.table = nn.Embedding(num_buckets, n_head)

    @torch.no_grad()
    def alibi_init(self) -> None:
        """Start every bucket at ALiBi's -m_h * distance (Press et al., 2022; head h has slope
        2^-h, as in our BERT), using the smallest distance that falls in the bucket. The
        table stays learned; this only gives it a locality prior to start from."""
        n_head = self.table.weight.shape[1]
        distance = torch.arange(-4 * self.max_distance, 4 * self.max_distance + 1)
        bucket = relative_position_bucket(distance, self.bidirectional, self.num_buckets, self.max_distance)
        nearest = torch.zeros(self.num_buckets).scatter_reduce(      # (buckets,); unused ones 0
            0, bucket, distance.abs().float(), reduce="amin", include_self=False)
        slopes = 2.0 ** -torch.arange(n_head, dtype=torch.float)                     # (nh,)
        self.table.weight.copy_(-nearest[:, None] * slopes[None, :])                 # (buckets, nh)

    def forward(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
        """-> (1, nh, Tq, Tk) bias; queries are positions 0..Tq-1, keys 0..Tk-1."""
        relative = torch.arange(k_len, device=device)[None, :] - torch.arange(q_len, device=device)[:, None]
        bucket = relative_position_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance)
        return self.table(bucket).permute(2, 0, 1)[None]                        # (1, nh, Tq, Tk)


class Attention(nn.Module):
    """Multi-head attention of queries from x over keys and values from `memory` (x itself
    for self-attention), with an optional additive bias and a boolean keep mask."""

    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} is not divisible by n_head {n_head}")
        self.n_head, self.dropout = n_head, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d), memory (B, S, d), keep bool broadcasting to (B, nh, T, S),
        bias (1, nh, T, S) or None -> (B, T, d)."""
        b, t, d = x.shape
        hs = d // self.n_head
        q = self.q(x).view(b, t, self.n_head, hs).transpose(1, 2)              # (B, nh, T, hs)
        k, v = self.kv(memory).split(d, dim=2)                                 # each (B, S, d)
        k = k.view(b, -1, self.n_head, hs).transpose(1, 2)                     # (B, nh, S, hs)
        v = v.view(b, -1, self.n_head, hs).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        if bias is None:                                                       # cross-attention
            y = scaled_dot_product_attention(q, k, v, mask=keep, dropout=p)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(hs) + bias            # (B, nh, T, S)
            weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
            y = F.dropout(weights, p) @ v                                      # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(b, t, d)                       # (B, T, d)
        return self.resid_dropout(self.proj(y))


class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(d_model), nn.RMSNorm(d_model)
        self.attn = Attention(d_model, n_head, dropout)
        self.mlp = MLP(d_model, dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, keep, bias)                                    # (B, S, d)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.RMSNorm(d_model) for _ in range(3))
        self.self_attn = Attention(d_model, n_head, dropout)
        self.cross_attn = Attention(d_model, n_head, dropout)
        self.mlp = MLP(d_model, dropout)

    def forward(self, x: torch.Tensor, causal: torch.Tensor, bias: torch.Tensor,
                memory: torch.Tensor, memory_keep: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, causal, bias)                             # (B, T, d)
        x = x + self.cross_attn(self.norm2(x), memory, memory_keep)            # reads the source
        return x + self.mlp(self.norm3(x))


class T5(nn.Module):
    def __init__(self, n_layer: int, n_head: int, d_model: int, dropout: float = 0.0,
                 num_buckets: int = 32, max_distance: int = 128) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(T5_VOCAB, d_model)
        self.dropout = nn.Dropout(dropout)
        self.enc_bias = RelativePositionBias(n_head, True, num_buckets, max_distance)
        self.dec_bias = RelativePositionBias(n_head, False, num_buckets, max_distance)
        self.encoder = nn.ModuleList(EncoderBlock(d_model, n_head, dropout) for _ in range(n_layer))
        self.decoder = nn.ModuleList(DecoderBlock(d_model, n_head, dropout) for _ in range(n_layer))
        self.enc_norm, self.dec_norm = nn.RMSNorm(d_model), nn.RMSNorm(d_model)
        self.apply(self._init_weights)
        self.enc_bias.alibi_init()
        self.dec_bias.alibi_init()
        for name, param in self.named_parameters():     # GPT-2's depth scaling, as in our GPT
            if name.endswith(("proj.weight", "mlp.down.weight")):
                nn.init.normal_(param, std=0.02 / math.sqrt(3 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # T5 draws the shared embedding with std 1; with our AdamW budget of a few hundred
            # steps that (and GPT's 0.02) left exact match at 0 after 300 date steps, std 0.1
            # reached 0.89 (measured, docs/step1-sequence.md).
            nn.init.normal_(module.weight, std=0.1)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) right-padded with PAD_ID -> memory (B, S, d) and keep (B, 1, 1, S)."""
        valid = src != PAD_ID                                                  # (B, S)
        if not bool(valid.any(dim=1).all()):
            raise ValueError("every source needs at least one non-pad token")
        keep = valid[:, None, None, :]                                         # keys only
        bias = self.enc_bias(src.shape[1], src.shape[1], src.device)           # (1, nh, S, S)
        x = self.dropout(self.embed(src))                                      # (B, S, d)
        for block in self.encoder:
            x = block(x, keep, bias)
        return self.dropout(self.enc_norm(x)), keep

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, T) starting with BOS_ID -> next-token logits (B, T, V)."""
        t = tgt_in.shape[1]
        causal = causal_mask(t, t, tgt_in.device)                              # (T, T)
        bias = self.dec_bias(t, t, tgt_in.device)                              # (1, nh, T, T)
        x = self.dropout(self.embed(tgt_in))                                   # (B, T, d)
        for block in self.decoder:
            x = block(x, causal, bias, memory, keep)
        h = self.dropout(self.dec_norm(x)) * self.d_model ** -0.5              # T5's tied-head scale
        return h @ self.embed.weight.T                                         # (B, T, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: src (B, S), tgt_in (B, T) -> logits (B, T, V)."""
        memory, keep = self.encode(src)
        return self.decode(tgt_in, memory, keep)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, max_len: int) -> torch.Tensor:
        """src (B, S) -> tokens (B, max_len), the most likely one at every step. The decoder
        re-reads its whole prefix each step: targets here are a dozen tokens, so a KV cache
        (see our GPT) would save little."""
        memory, keep = self.encode(src)
        out = torch.full((src.shape[0], 1), BOS_ID, dtype=torch.long, device=src.device)
        for _ in range(max_len):
            nxt = self.decode(out, memory, keep)[:, -1].argmax(-1, keepdim=True)   # (B, 1)
            out = torch.cat([out, nxt], dim=1)
        return out[:, 1:]

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, max_len: int, beam: int) -> torch.Tensor:
        """Keep the `beam` most likely prefixes per source -> best tokens (B, max_len). A prefix
        that has emitted EOS keeps its score and is extended only by EOS."""
        b = src.shape[0]
        memory, keep = self.encode(src)
        memory, keep = memory.repeat_interleave(beam, 0), keep.repeat_interleave(beam, 0)
        scores = torch.full((b, beam), float("-inf"), device=src.device)
        scores[:, 0] = 0.0                                                     # start from one prefix
        out = torch.full((b * beam, 1), BOS_ID, dtype=torch.long, device=src.device)
        for _ in range(max_len):
            logp = F.log_softmax(self.decode(out, memory, keep)[:, -1], dim=-1)   # (B*k, V)
            done = out[:, -1] == EOS_ID
            logp[done] = float("-inf")
            logp[done, EOS_ID] = 0.0
            vocab = logp.shape[-1]
            total = scores[:, :, None] + logp.view(b, beam, vocab)             # (B, k, V)
            scores, flat = total.view(b, -1).topk(beam, dim=-1)                # (B, k), best first
            parent = (flat // vocab + torch.arange(b, device=src.device)[:, None] * beam).flatten()
            out = torch.cat([out[parent], (flat % vocab).flatten()[:, None]], dim=1)
        return out.view(b, beam, -1)[:, 0, 1:]


def seq2seq_loss(model: T5, src: torch.Tensor, tgt_in: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the target tokens; PAD_ID targets carry no loss."""
    logits = model(src, tgt_in)                                                # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD_ID)

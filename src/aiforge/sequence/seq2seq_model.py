"""A GRU encoder-decoder with Bahdanau or Luong attention, or none; greedy and beam search.

Encoder: characters -> embedding -> bidirectional GRU (aiforge.sequence.rnn) -> one annotation
h_j (2H) per source character; the decoder starts from tanh(W [h_fwd_last; h_bwd_first]).

Decoder, one output character per step, three ways to read the source:
- none (Sutskever et al., 2014; Cho et al., 2014): the whole source must fit in the start
  state; long inputs suffer, which the accuracy-by-length figure shows.
- Bahdanau (additive; Bahdanau et al., 2015, eqs. 5-6): score e_ij = v^T tanh(W_s s_{i-1} + W_h h_j)
  from the *previous* state, context c_i = sum_j softmax(e)_ij h_j is fed into the GRU step
  and the output layer.
- Luong ("general", multiplicative; Luong et al., 2015, eqs. 5 and 8): the GRU steps first, then
  score(s_i, h_j) = s_i^T W_a h_j with the *current* state, and h~_i = tanh(W_c [c_i; s_i]).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from aiforge.sequence.rnn import RNN, GRUCell

AttentionKind = Literal["bahdanau", "luong", "none"]
PAD, BOS, EOS = 0, 1, 2


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scores (B, S), mask (B, S) True on real source characters -> weights (B, S)."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class AdditiveAttention(nn.Module):
    """Bahdanau: e_ij = v^T tanh(W_s s + W_h h_j). W_h h_j is computed once per source."""

    def __init__(self, hidden: int, annotation: int, attn: int) -> None:
        super().__init__()
        self.w_s = nn.Linear(hidden, attn, bias=False)
        self.w_h = nn.Linear(annotation, attn)
        self.v = nn.Linear(attn, 1, bias=False)

    def forward(self, s: torch.Tensor, enc: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """s (B, H), enc (B, S, 2H), keys = W_h enc (B, S, A) -> context (B, 2H), weights (B, S)."""
        scores = self.v(torch.tanh(self.w_s(s)[:, None] + keys)).squeeze(-1)  # (B, S)
        weights = masked_softmax(scores, mask)
        return (weights[:, :, None] * enc).sum(1), weights


class MultiplicativeAttention(nn.Module):
    """Luong 'general': score(s, h_j) = s^T W_a h_j; W_a h_j is computed once per source."""

    def __init__(self, hidden: int, annotation: int) -> None:
        super().__init__()
        self.w_a = nn.Linear(annotation, hidden, bias=False)

    def forward(self, s: torch.Tensor, enc: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = (keys @ s[:, :, None]).squeeze(-1)                            # (B, S)
        weights = masked_softmax(scores, mask)
        return (weights[:, :, None] * enc).sum(1), weights


class Seq2Seq(nn.Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, attention: AttentionKind,
                 embed: int = 32, hidden: int = 64, attn: int = 64) -> None:
        super().__init__()
        self.attention_kind = attention
        self.src_emb = nn.Embedding(src_vocab, embed, padding_idx=PAD)
        self.encoder = RNN("gru", embed, hidden, bidirectional=True)
        self.init_state = nn.Linear(2 * hidden, hidden)
        self.tgt_emb = nn.Embedding(tgt_vocab, embed)
        self.attn: AdditiveAttention | MultiplicativeAttention | None = None
        if attention == "bahdanau":
            self.attn = AdditiveAttention(hidden, 2 * hidden, attn)
            self.cell = GRUCell(embed + 2 * hidden, hidden)         # input: [y_{i-1}; c_i]
            self.out = nn.Linear(hidden + 2 * hidden + embed, tgt_vocab)
        elif attention == "luong":
            self.attn = MultiplicativeAttention(hidden, 2 * hidden)
            self.cell = GRUCell(embed, hidden)
            self.combine = nn.Linear(2 * hidden + hidden, hidden)   # W_c
            self.out = nn.Linear(hidden, tgt_vocab)
        elif attention == "none":
            self.cell = GRUCell(embed, hidden)
            self.out = nn.Linear(hidden, tgt_vocab)
        else:
            raise ValueError(f"attention must be bahdanau, luong or none, got {attention!r}")

    def encode(self, src: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """src (B, S) -> annotations (B, S, 2H), attention keys (B, S, A|H), start state (B, H)."""
        enc, h_n = self.encoder(self.src_emb(src), mask=mask)       # (B, S, 2H), (2, B, H)
        assert isinstance(h_n, torch.Tensor)
        s0 = torch.tanh(self.init_state(torch.cat([h_n[0], h_n[1]], dim=-1)))
        if isinstance(self.attn, AdditiveAttention):
            keys = self.attn.w_h(enc)
        elif isinstance(self.attn, MultiplicativeAttention):
            keys = self.attn.w_a(enc)
        else:
            keys = enc
        return enc, keys, s0

    def step(self, y_prev: torch.Tensor, s: torch.Tensor, enc: torch.Tensor, keys: torch.Tensor,
             mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """y_prev (B,), s (B, H) -> logits (B, V), new state (B, H), attention weights (B, S)."""
        e = self.tgt_emb(y_prev)                                    # (B, E)
        if isinstance(self.attn, AdditiveAttention):
            context, weights = self.attn(s, enc, keys, mask)         # from s_{i-1}
            s = self.cell(torch.cat([e, context], dim=-1), s)
            return self.out(torch.cat([s, context, e], dim=-1)), s, weights
        s = self.cell(e, s)
        if isinstance(self.attn, MultiplicativeAttention):
            context, weights = self.attn(s, enc, keys, mask)         # from s_i
            h_tilde = torch.tanh(self.combine(torch.cat([context, s], dim=-1)))
            return self.out(h_tilde), s, weights
        return self.out(s), s, None

    def forward(self, src: torch.Tensor, mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: src (B, S), tgt_in (B, T) starting with BOS -> logits (B, T, V)."""
        enc, keys, s = self.encode(src, mask)
        logits = []
        for t in range(tgt_in.shape[1]):
            step_logits, s, _ = self.step(tgt_in[:, t], s, enc, keys, mask)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, mask: torch.Tensor, max_len: int
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> tokens (B, max_len) and attention weights (B, max_len, S) (None without attention)."""
        enc, keys, s = self.encode(src, mask)
        y = torch.full((src.shape[0],), BOS, dtype=torch.long, device=src.device)
        tokens, maps = [], []
        for _ in range(max_len):
            logits, s, weights = self.step(y, s, enc, keys, mask)
            y = logits.argmax(-1)
            tokens.append(y)
            if weights is not None:
                maps.append(weights)
        return torch.stack(tokens, 1), torch.stack(maps, 1) if maps else None

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, mask: torch.Tensor, max_len: int, beam: int
                    ) -> torch.Tensor:
        """Keep the `beam` most likely prefixes per example; -> best tokens (B, max_len).

        A finished prefix (ended by EOS) keeps its score and is extended only by EOS, so
        finished and open prefixes compete on the same total log-probability."""
        b = src.shape[0]
        enc, keys, s = self.encode(src, mask)
        enc, keys, s, mask = (t.repeat_interleave(beam, dim=0) for t in (enc, keys, s, mask))
        scores = torch.full((b, beam), float("-inf"), device=src.device)
        scores[:, 0] = 0.0                                          # start from one prefix
        y = torch.full((b * beam,), BOS, dtype=torch.long, device=src.device)
        tokens = torch.empty(b * beam, 0, dtype=torch.long, device=src.device)
        for _ in range(max_len):
            logits, s, _ = self.step(y, s, enc, keys, mask)
            logp = F.log_softmax(logits, dim=-1)                    # (B*k, V)
            done = (tokens[:, -1] == EOS) if tokens.shape[1] else torch.zeros_like(y, dtype=torch.bool)
            logp[done] = float("-inf")
            logp[done, EOS] = 0.0
            vocab = logp.shape[-1]
            total = scores[:, :, None] + logp.view(b, beam, vocab)  # (B, k, V)
            scores, flat = total.view(b, -1).topk(beam, dim=-1)     # (B, k), best first
            parent = flat // vocab + torch.arange(b, device=src.device)[:, None] * beam
            parent, y = parent.flatten(), (flat % vocab).flatten()  # (B*k,)
            tokens = torch.cat([tokens[parent], y[:, None]], dim=1)
            s = s[parent]
        return tokens.view(b, beam, -1)[:, 0]

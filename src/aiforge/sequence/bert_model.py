"""An encoder-only transformer (BERT; Devlin et al., 2019), written part by part.

    ids -> token embedding + learned position embedding
        -> n_layer x Block:  x = x + SelfAttn(LN(x), keep);   (scores + ALiBi distance bias)  x = x + MLP(LN(x))   (pre-LayerNorm)
        -> LN -> hidden states h (B, T, d)
    MLM head:        h -> Linear -> GELU -> LN -> linear whose weight IS the token embedding
    classifier head: mean of h over the real (non-pad) tokens -> Linear -> class logits

Unlike GPT every token attends to every other token (bidirectional), which is why the model
cannot be trained by next-token prediction and is pre-trained by masked-language modelling
(aiforge.sequence.masking) instead. Padded batches pass a `keep` mask so that no query
attends to a pad key: the outputs at real tokens do not depend on the padding.

Three choices differ from the 2019 paper and are said here:
- pre-LayerNorm (as in our GPT; more stable without warm-up tricks, Xiong et al., 2020)
  instead of post-LayerNorm;
- a mean-pooled classifier instead of the [CLS] token, whose state BERT trains with
  next-sentence prediction that we do not have (mean pooling is what Sentence-BERT, Reimers
  and Gurevych, 2019, found to work best);
- besides learned absolute positions, a symmetric ALiBi bias (Press et al., 2022) on the
  attention scores (`alibi=True`, the default). A masked character can only be predicted from
  its neighbours, and with learned positions alone the attention has to discover "look next
  door" from scratch: at our budget (2 CPU cores) the MLM loss sat on the unigram plateau
  (3.4 nats) for 600 steps; with the locality bias it leaves it within 100 steps. With
  `alibi=False` the attention is exactly the shared aiforge.sequence.attention function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aiforge.data.text_corpus import VOCAB_SIZE
from aiforge.sequence.attention import scaled_dot_product_attention
from aiforge.sequence.gpt_model import MLP, gpt2_init

# A tokenizer's ids [0, V) come first, then two special ids: [PAD] = V, [MASK] = V + 1. The
# constants are those of the 98-symbol character vocabulary; a BPE encoder has its own V.
PAD_ID = VOCAB_SIZE
MASK_ID = VOCAB_SIZE + 1


def alibi_bias(n_head: int, t: int, device: torch.device | None = None) -> torch.Tensor:
    """(nh, T, T) additive scores -m_h |i - j| (ALiBi, Press et al., 2022, made symmetric for
    an encoder). Head h = 0, 1, ... has slope m_h = 2^-h: head 0 looks next door, later heads
    ever farther. (Press et al. use 2^(-8(h+1)/nh) for words; characters need steeper ones.)"""
    slopes = 2.0 ** -torch.arange(n_head, device=device, dtype=torch.float)         # (nh,)
    pos = torch.arange(t, device=device)
    distance = (pos[None, :] - pos[:, None]).abs()                              # (T, T)
    return -slopes[:, None, None] * distance                                    # (nh, T, T)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: every query sees every kept key."""

    def __init__(self, d_model: int, n_head: int, dropout: float = 0.0, alibi: bool = False) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} is not divisible by n_head {n_head}")
        self.n_head, self.dropout, self.alibi = n_head, dropout, alibi
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), keep (B, T) bool (True: a real token) -> (B, T, d)."""
        b, t, d = x.shape
        hs = d // self.n_head
        q, k, v = self.qkv(x).split(d, dim=2)                          # each (B, T, d)
        q = q.view(b, t, self.n_head, hs).transpose(1, 2)              # (B, nh, T, hs)
        k = k.view(b, t, self.n_head, hs).transpose(1, 2)
        v = v.view(b, t, self.n_head, hs).transpose(1, 2)
        mask = keep[:, None, None, :]                                  # (B, 1, 1, T): keys only
        p = self.dropout if self.training else 0.0
        if self.alibi:
            scores = q @ k.transpose(-2, -1) / math.sqrt(hs) + alibi_bias(self.n_head, t, x.device)
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, nh, T, T)
            y = F.dropout(weights, p) @ v                               # (B, nh, T, hs)
        else:
            y = scaled_dot_product_attention(q, k, v, mask=mask, dropout=p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(b, t, d)               # (B, T, d)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float, alibi: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_head, dropout, alibi)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), keep)                           # (B, T, d)
        return x + self.mlp(self.ln2(x))


class BertEncoder(nn.Module):
    """The encoder with both heads: `mlm_logits` for pre-training, `forward` classifies."""

    def __init__(self, max_len: int, n_layer: int, n_head: int, d_model: int, n_classes: int,
                 dropout: float = 0.0, alibi: bool = True, vocab_size: int = VOCAB_SIZE) -> None:
        super().__init__()
        self.max_len = max_len
        self.vocab_size = vocab_size                                    # real token ids [0, V)
        self.pad_id, self.mask_id = vocab_size, vocab_size + 1
        self.tok_emb = nn.Embedding(vocab_size + 2, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_head, dropout, alibi) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        # MLM head (BERT's "transform" then a decoder tied to the input embedding, own bias).
        self.mlm_transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size + 2))
        self.classifier = nn.Linear(d_model, n_classes)
        gpt2_init(self, n_layer)                                        # as in our GPT

    def encode(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) -> hidden states (B, T, d) and keep (B, T), True at non-pad tokens."""
        t = ids.shape[1]
        if t > self.max_len:
            raise ValueError(f"{t} positions exceed the encoder's {self.max_len}")
        keep = ids != self.pad_id                                      # (B, T)
        if not bool(keep.any(dim=1).all()):
            raise ValueError("every sequence needs at least one non-pad token")
        pos = torch.arange(t, device=ids.device)                       # (T,)
        x = self.dropout(self.tok_emb(ids) + self.pos_emb(pos))        # (B, T, d)
        for block in self.blocks:
            x = block(x, keep)
        return self.ln_f(x), keep

    def mlm_head(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., d) -> logits over the vocabulary (..., V)."""
        return self.mlm_transform(h) @ self.tok_emb.weight.T + self.mlm_bias

    def mlm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> logits over the vocabulary at every position (B, T, V)."""
        h, _ = self.encode(ids)
        return self.mlm_head(h)                                         # (B, T, V)

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> the mean hidden state of each sequence's real tokens (B, d)."""
        h, keep = self.encode(ids)
        w = keep.unsqueeze(-1).to(h.dtype)                             # (B, T, 1)
        return (h * w).sum(1) / w.sum(1)                               # (B, d)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T), right-padded with `pad_id` -> class logits (B, n_classes)."""
        return self.classifier(self.dropout(self.pooled(ids)))


def mlm_loss(model: BertEncoder, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the selected positions only (labels != -100).

    The vocabulary projection runs at those positions alone (about 15%), as BERT's own code
    gathers them: with a 4k-token BPE vocabulary, projecting every position would cost more
    than the whole encoder."""
    h, _ = model.encode(inputs)                                        # (B, T, d)
    picked = labels != -100                                            # (B, T)
    return F.cross_entropy(model.mlm_head(h[picked]), labels[picked])  # logits (P, V)

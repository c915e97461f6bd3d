"""Step 1, RNNs: sequence-to-sequence with attention, translating human dates to ISO 8601.

One run trains the main model (`attention`, Bahdanau by default) and, with `baselines`, the
other two decoders (Luong, and no attention) on the same data and budget, each with core.fit.
It reports held-out exact match (greedy and beam search) and BLEU (sacrebleu, character
level), draws attention heat maps, and plots exact match by input length for all three: the
no-attention model must squeeze every source into one vector and loses accuracy as inputs
grow; attention reads the source afresh at every output step.
"""

from __future__ import annotations

import dataclasses
import itertools
import string
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import Bar, Recipe, RunContext, SupervisedConfig, fit, register
from aiforge.core.plots import learning_curves, plt
from aiforge.data.dates import DatePair, date_splits
from aiforge.sequence.prefix import PrefixTracker
from aiforge.sequence.seq2seq_model import BOS, EOS, PAD, AttentionKind, Seq2Seq

SRC_CHARS = " ,./-" + string.digits + string.ascii_letters     # ids from 2; 1 is unknown
TGT_CHARS = string.digits + "-"                                 # ids from 3 (PAD, BOS, EOS)
SRC_VOCAB, TGT_VOCAB = len(SRC_CHARS) + 2, len(TGT_CHARS) + 3
TGT_LEN = 11                                                    # "YYYY-MM-DD" + EOS
VARIANTS: tuple[AttentionKind, ...] = ("bahdanau", "luong", "none")


class Seq2SeqConfig(SupervisedConfig):
    attention: Literal["bahdanau", "luong", "none"] = "bahdanau"
    """Decoder of the saved model: additive (Bahdanau), multiplicative (Luong) or none."""
    baselines: bool = True
    """Also train the other two decoders on the same data for the comparison figures."""
    embed: int = Field(32, ge=1, le=1024)
    """Character embedding width (source and target)."""
    hidden: int = Field(64, ge=1, le=2048)
    """GRU hidden units (the encoder has this many per direction)."""
    attn: int = Field(64, ge=1, le=2048)
    """Width of the additive attention's hidden layer (Bahdanau only)."""
    n_train: int = Field(20_000, ge=1)
    """Training pairs."""
    n_val: int = Field(1_000, ge=1)
    """Validation pairs (best epoch by greedy exact match)."""
    n_test: int = Field(2_000, ge=1)
    """Test pairs, none of whose human strings occurs in training."""
    epochs: int = Field(8, ge=1)
    """Passes over the training set, per model."""
    batch_size: int = Field(64, ge=1)
    """Pairs per optimisation step."""
    lr: float = Field(3e-3, gt=0, le=10)
    """Peak learning rate (AdamW)."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm."""
    beam: int = Field(5, ge=1, le=64)
    """Beam width of beam-search decoding."""


def encode_src(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, S) and mask (B, S), True on real characters."""
    index = {ch: i + 2 for i, ch in enumerate(SRC_CHARS)}
    width = max(len(t) for t in texts)
    ids = torch.full((len(texts), width), PAD, dtype=torch.long)
    for row, text in enumerate(texts):
        ids[row, :len(text)] = torch.tensor([index.get(ch, 1) for ch in text], dtype=torch.long)
    return ids, ids != PAD


def encode_tgt(isos: list[str]) -> torch.Tensor:
    """(B, TGT_LEN) target ids: the ISO characters then EOS."""
    return torch.tensor([[TGT_CHARS.index(ch) + 3 for ch in iso] + [EOS] for iso in isos])


def decode_tgt(ids: torch.Tensor) -> list[str]:
    out = []
    for row in ids.tolist():
        chars = []
        for i in row:
            if i == EOS:
                break
            chars.append(TGT_CHARS[i - 3] if i >= 3 else "?")
        out.append("".join(chars))
    return out


def tensors(pairs: list[DatePair]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src, mask = encode_src([p.human for p in pairs])
    return src, mask, encode_tgt([p.iso for p in pairs])


def build_model(cfg: Seq2SeqConfig, attention: AttentionKind | None = None) -> Seq2Seq:
    return Seq2Seq(SRC_VOCAB, TGT_VOCAB, attention or cfg.attention, cfg.embed, cfg.hidden, cfg.attn)


def translate(model: Seq2Seq, texts: list[str], beam: int = 1, batch: int = 500) -> list[str]:
    """Human dates -> ISO strings, greedy (beam=1) or beam search."""
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(texts), batch):
        src, mask = encode_src(texts[start:start + batch])
        src, mask = src.to(device), mask.to(device)
        if beam == 1:
            ids, _ = model.greedy(src, mask, TGT_LEN)
        else:
            ids = model.beam_search(src, mask, TGT_LEN, beam)
        out.extend(decode_tgt(ids.cpu()))
    return out


def exact_match(pred: list[str], pairs: list[DatePair]) -> float:
    return float(np.mean([p == q.iso for p, q in zip(pred, pairs, strict=True)]))


def bleu(pred: list[str], pairs: list[DatePair]) -> float:
    """Corpus BLEU on characters (sacrebleu): partial credit for nearly right dates."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(pred, [[p.iso for p in pairs]], tokenize="char").score)


def train_variant(kind: AttentionKind, cfg: Seq2SeqConfig, ctx: RunContext,
                  splits: dict[str, list[DatePair]]) -> tuple[Seq2Seq, list[dict[str, float]]]:
    src, mask, tgt = tensors(splits["train"])
    tgt_in = torch.cat([torch.full((len(tgt), 1), BOS), tgt[:, :-1]], dim=1)   # shift right
    loader = DataLoader(TensorDataset(src, mask, tgt_in, tgt), batch_size=cfg.batch_size, shuffle=True)
    model = build_model(cfg, kind)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        src, mask, tgt_in, tgt = batch
        width = int(mask.sum(1).max())                          # trim the batch's common padding
        logits = model(src[:, :width], mask[:, :width], tgt_in)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), tgt.flatten())

    def evaluate(model: nn.Module) -> dict[str, float]:
        assert isinstance(model, Seq2Seq)
        return {"val_exact": exact_match(translate(model, [p.human for p in splits["val"]]), splits["val"])}

    # Each variant checkpoints into its own folder, so --resume continues the right one.
    sub = dataclasses.replace(ctx, out=ctx.out / "variants" / kind,
                              tracker=PrefixTracker(ctx.tracker, kind), recipe=f"{ctx.recipe}:{kind}")
    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=sub,
                 optimizer=optimizer, monitor="val_exact")
    return model.eval(), result.history


def heat_maps(model: Seq2Seq, pairs: list[DatePair], path: Path) -> None:
    texts = [p.human for p in pairs]
    src, mask = encode_src(texts)
    device = next(model.parameters()).device
    ids, maps = model.greedy(src.to(device), mask.to(device), TGT_LEN)
    assert maps is not None
    ids, maps = ids.cpu(), maps.cpu()
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6))
    for ax, text, row, weights in zip(axes, texts, decode_tgt(ids), maps, strict=True):
        out = [*row, "</s>"]
        ax.imshow(weights[:len(out), :len(text)].numpy(), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(text)), list(text), fontsize=7)
        ax.set_yticks(range(len(out)), out, fontsize=7)
        ax.set_xlabel("source")
    axes[0].set_ylabel("output")
    fig.suptitle(f"{model.attention_kind} attention weights")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_by_length(preds: dict[str, list[str]], pairs: list[DatePair], path: Path) -> dict[str, float]:
    lengths = np.array([len(p.human) for p in pairs])
    edges = [0, 10, 14, 18, 22, 40]
    labels = [f"{lo + 1}-{hi}" for lo, hi in itertools.pairwise(edges)]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    worst: dict[str, float] = {}
    for kind, pred in preds.items():
        right = np.array([p == q.iso for p, q in zip(pred, pairs, strict=True)])
        accs = [float(right[(lengths > lo) & (lengths <= hi)].mean())
                for lo, hi in itertools.pairwise(edges)]
        ax.plot(labels, accs, marker="o", label=kind)
        worst[f"{kind}_exact_longest"] = accs[-1]
    ax.set(xlabel="input length (characters)", ylabel="exact match (greedy)", ylim=(0, 1.02),
           title="held-out exact match by input length")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return worst


def train(cfg: Seq2SeqConfig, ctx: RunContext) -> dict[str, float]:
    splits = date_splits(cfg.n_train, cfg.n_val, cfg.n_test)
    kinds = [cfg.attention, *[k for k in VARIANTS if k != cfg.attention]] if cfg.baselines else [cfg.attention]
    test_texts = [p.human for p in splits["test"]]
    metrics: dict[str, float] = {}
    preds: dict[str, list[str]] = {}
    for kind in kinds:
        model, history = train_variant(kind, cfg, ctx, splits)
        learning_curves(history, ctx.figure_path(f"learning_curves_{kind}.png"), f"{ctx.recipe} ({kind})")
        preds[kind] = translate(model, test_texts)
        metrics[f"{kind}_exact"] = exact_match(preds[kind], splits["test"])
        metrics[f"{kind}_exact_beam"] = exact_match(translate(model, test_texts, cfg.beam), splits["test"])
        metrics[f"{kind}_bleu"] = bleu(preds[kind], splits["test"])
        if kind != "none":
            heat_maps(model, splits["test"][:3], ctx.figure_path(f"attention_{kind}.png"))
        if kind == cfg.attention:
            ctx.save_model(model)
    metrics.update(accuracy_by_length(preds, splits["test"], ctx.figure_path("exact_by_length.png")))
    # The bar's metric: the saved model's held-out exact match, greedy decoding.
    metrics["test_exact"] = metrics[f"{cfg.attention}_exact"]
    return metrics


RECIPE = register(Recipe(
    name="sequence.seq2seq",
    step="1",
    topic="RNNs",
    summary="GRU encoder-decoder with Bahdanau/Luong attention: human dates -> ISO 8601.",
    config=Seq2SeqConfig,
    train=train,
    bar=Bar("test_exact", ">=", 0.98),
    # Quick: the attention model alone, briefly; a model that has not learnt the formats
    # gets no date exactly right, so half of them right needs real reading of the source.
    quick_bar=Bar("test_exact", ">=", 0.5),
    budget_s=600,
    quick={"baselines": False, "n_train": 6_000, "n_val": 300, "n_test": 500, "epochs": 3, "beam": 3},
    build_model=build_model,
))

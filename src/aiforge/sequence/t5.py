"""Step 1, Transformers: a T5-style encoder-decoder, span-corruption pre-training, then dates.

1. Pre-train the encoder-decoder (aiforge.sequence.t5_model) with T5's span corruption
   (aiforge.sequence.span_corruption: 15% of characters in spans of mean length 3, each span
   replaced by a sentinel; the decoder writes the missing spans) on the corpus of
   sequence.gpt and sequence.bert, the Python standard library's top-level modules.
2. Fine-tune the whole model on the date task of sequence.seq2seq (human dates -> ISO 8601,
   aiforge.data.dates): the encoder reads the human string, the decoder writes "YYYY-MM-DD".
3. For comparison, fine-tune the same model from the same random weights, with the same data
   order and recipe, without step 1.

Held-out exact match and BLEU are those of sequence.seq2seq; decoding is greedy and beam.
The bar is the pre-trained model's held-out exact match (greedy) >= 0.98.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import Bar, InputError, Recipe, RunContext, SupervisedConfig, fit, register
from aiforge.core.plots import bar_chart, learning_curves
from aiforge.core.seeding import seed_everything
from aiforge.data.dates import DatePair, date_splits
from aiforge.data.text_corpus import CHARS, encode, random_windows, read_corpus, split_text
from aiforge.sequence.prefix import PrefixTracker
from aiforge.sequence.seq2seq import bleu, exact_match
from aiforge.sequence.span_corruption import span_corrupt
from aiforge.sequence.t5_model import (
    BOS_ID,
    EOS_ID,
    FIRST_SENTINEL,
    N_SENTINELS,
    PAD_ID,
    T5,
    seq2seq_loss,
)

SPAN_EVAL_SEED = 11   # the validation windows' corruption is drawn once, the same every epoch
ISO_LEN = 11          # "YYYY-MM-DD" + EOS
MAX_SOURCE = 64       # longest human date accepted, in characters


class T5Config(SupervisedConfig):
    """`epochs`, `steps_per_epoch`, `batch_size`, `lr` and the schedule fields are those of the
    span-corruption pre-training; the `finetune_*` fields are those of both date models."""

    corpus_path: str | None = None
    """A UTF-8 text file to pre-train on; None takes the Python standard library's source."""
    corpus_chars: int = Field(1_500_000, ge=10_000)
    """Characters of stdlib source to pre-train on (the sequence.gpt corpus)."""
    val_fraction: float = Field(0.05, gt=0, lt=0.5)
    """The last fraction of the corpus is the pre-training validation split."""
    block_size: int = Field(64, ge=8, le=512)
    """Pre-training window in characters, before corruption."""
    noise_density: float = Field(0.15, gt=0, lt=1)
    """Share of each window's characters hidden in spans (Raffel et al., 2020: 0.15)."""
    mean_span: float = Field(3.0, ge=1)
    """Mean length of a hidden span (Raffel et al., 2020: 3)."""
    n_layer: int = Field(2, ge=1, le=24)
    """Blocks in the encoder and, as many, in the decoder."""
    n_head: int = Field(4, ge=1, le=32)
    """Attention heads per attention layer; d_model must be divisible by it."""
    d_model: int = Field(64, ge=8, le=2048)
    """Width of the residual stream."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on embeddings, attention weights and residual branches."""
    num_buckets: int = Field(32, ge=4, le=256)
    """Relative-position buckets per attention stack (T5: 32)."""
    max_distance: int = Field(128, ge=8, le=4096)
    """Distances from here on share the last relative-position bucket (T5: 128)."""
    epochs: int = Field(6, ge=1)
    """Pre-training evaluation rounds; each is `steps_per_epoch` optimisation steps."""
    steps_per_epoch: int = Field(200, ge=1)
    """Pre-training steps between evaluations and checkpoints."""
    batch_size: int = Field(32, ge=1)
    """Pre-training windows per step."""
    lr: float = Field(3e-3, gt=0, le=10)
    """Peak pre-training learning rate (AdamW)."""
    weight_decay: float = Field(0.01, ge=0)
    """Decoupled weight decay on matrices, both phases."""
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    """Fraction of each phase's steps spent warming the learning rate up linearly."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value, both phases."""
    span_eval_windows: int = Field(256, ge=8)
    """Validation windows (corrupted once, with a fixed seed) scored after each epoch."""
    n_train: int = Field(20_000, ge=1)
    """Date pairs to fine-tune on."""
    n_val: int = Field(1_000, ge=1)
    """Validation date pairs (best fine-tuning epoch by greedy exact match)."""
    n_test: int = Field(2_000, ge=1)
    """Held-out test date pairs, none of whose human strings occurs in training."""
    finetune_epochs: int = Field(8, ge=1)
    """Passes over the date pairs, for both date models."""
    finetune_batch_size: int = Field(64, ge=1)
    """Date pairs per fine-tuning step."""
    finetune_lr: float = Field(3e-3, gt=0, le=10)
    """Peak fine-tuning learning rate, for both date models."""
    scratch: bool = True
    """Also fine-tune the same model from its random initial weights, for comparison."""
    beam: int = Field(4, ge=1, le=64)
    """Beam width of beam-search decoding."""

    @field_validator("corpus_path")
    @classmethod
    def _corpus_exists(cls, path: str | None) -> str | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"corpus file not found: {path}")
        return path


def build_model(cfg: T5Config) -> T5:
    return T5(cfg.n_layer, cfg.n_head, cfg.d_model, cfg.dropout, cfg.num_buckets, cfg.max_distance)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """Weight decay on matrices only (not biases, norm gains or the bias tables' rows)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "bias.table" not in n]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2 or "bias.table" in n]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=lr)


def _phase(ctx: RunContext, name: str) -> RunContext:
    # Each phase checkpoints into its own folder, so --resume continues the right one.
    return dataclasses.replace(ctx, out=ctx.out / "phases" / name, recipe=f"{ctx.recipe}:{name}",
                               tracker=PrefixTracker(ctx.tracker, name))


def decoder_input(targets: torch.Tensor) -> torch.Tensor:
    """Teacher forcing: targets (B, T) -> BOS followed by targets[:, :-1] (B, T)."""
    return torch.cat([torch.full_like(targets[:, :1], BOS_ID), targets[:, :-1]], dim=1)


# --- pre-training ------------------------------------------------------------------------

class CorruptedWindows:
    """A pre-training 'epoch': `steps` batches of random windows, corrupted afresh each time
    from torch's global RNG (core.fit restores it on resume)."""

    def __init__(self, data: torch.Tensor, cfg: T5Config) -> None:
        self.data, self.cfg = data, cfg

    def __len__(self) -> int:
        return self.cfg.steps_per_epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.cfg.steps_per_epoch):
            x, _ = random_windows(self.data, self.cfg.block_size, self.cfg.batch_size, None)
            batch = span_corrupt(x, first_sentinel=FIRST_SENTINEL, n_sentinels=N_SENTINELS, eos=EOS_ID,
                                 noise_density=self.cfg.noise_density, mean_span=self.cfg.mean_span)
            yield batch.inputs, batch.targets


@torch.no_grad()
def span_scores(model: T5, inputs: torch.Tensor, targets: torch.Tensor, batch: int = 128
                ) -> dict[str, float]:
    """Mean loss and accuracy of the target tokens (sentinels, hidden characters, EOS)."""
    loss_sum, correct, count = 0.0, 0, 0
    for s in range(0, len(inputs), batch):
        src, tgt = inputs[s:s + batch], targets[s:s + batch]
        logits = model(src, decoder_input(tgt))                                # (b, T, V)
        loss_sum += float(F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), reduction="sum"))
        correct += int((logits.argmax(-1) == tgt).sum())
        count += tgt.numel()
    return {"val_span_loss": loss_sum / count, "val_span_acc": correct / count}


def context_free_loss(targets: torch.Tensor) -> float:
    """The entropy of the targets' own token frequencies: the lowest mean loss on them of any
    model that ignores the input (it may know the exact frequencies, nothing else). Beating
    it means the decoder reads the corrupted text."""
    counts = torch.bincount(targets.flatten()).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def pretrain(model: T5, cfg: T5Config, ctx: RunContext) -> tuple[list[dict[str, float]], float]:
    splits = split_text(read_corpus(cfg.corpus_path, cfg.corpus_chars), cfg.val_fraction)
    gen = torch.Generator().manual_seed(SPAN_EVAL_SEED)
    val_x, _ = random_windows(splits.val, cfg.block_size, cfg.span_eval_windows, gen)
    val = span_corrupt(val_x, first_sentinel=FIRST_SENTINEL, n_sentinels=N_SENTINELS, eos=EOS_ID,
                       noise_density=cfg.noise_density, mean_span=cfg.mean_span, generator=gen)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        assert isinstance(model, T5)
        src, tgt = batch
        return seq2seq_loss(model, src, decoder_input(tgt), tgt)

    def evaluate(model: nn.Module) -> dict[str, float]:
        assert isinstance(model, T5)
        return span_scores(model, val.inputs, val.targets)

    result = fit(model, CorruptedWindows(splits.train, cfg), loss_fn=loss_fn, evaluate=evaluate,
                 cfg=cfg, ctx=_phase(ctx, "pretrain"), optimizer=make_optimizer(model, cfg.lr, cfg.weight_decay),
                 monitor="val_span_loss", mode="min")
    return result.history, context_free_loss(val.targets)


# --- the date task -----------------------------------------------------------------------

def encode_sources(texts: list[str]) -> torch.Tensor:
    """Human dates -> (B, longest) character ids, right-padded with PAD_ID."""
    if any(not t for t in texts):
        raise InputError("cannot translate an empty text")
    if (longest := max(len(t) for t in texts)) > MAX_SOURCE:
        raise InputError(f"a text has {longest} characters; dates of at most {MAX_SOURCE} are read")
    out = torch.full((len(texts), max(len(t) for t in texts)), PAD_ID, dtype=torch.long)
    for i, text in enumerate(texts):
        out[i, :len(text)] = encode(text)
    return out


def encode_targets(isos: list[str]) -> torch.Tensor:
    """ISO dates -> (B, ISO_LEN) ids: the characters, then EOS."""
    return torch.stack([torch.cat([encode(iso), torch.tensor([EOS_ID])]) for iso in isos])


def decode_targets(ids: torch.Tensor) -> list[str]:
    """Generated ids (B, T) -> strings, cut at the first EOS; special ids read as '?'."""
    out = []
    for row in ids.tolist():
        row = row[:row.index(EOS_ID)] if EOS_ID in row else row
        out.append("".join(CHARS[i] if i < len(CHARS) else "?" for i in row))
    return out


@torch.no_grad()
def translate(model: T5, texts: list[str], beam: int = 1, batch: int = 500) -> list[str]:
    """Human dates -> ISO strings, greedy (beam=1) or beam search."""
    device = next(model.parameters()).device
    out: list[str] = []
    for s in range(0, len(texts), batch):
        src = encode_sources(texts[s:s + batch]).to(device)
        ids = model.greedy(src, ISO_LEN) if beam == 1 else model.beam_search(src, ISO_LEN, beam)
        out.extend(decode_targets(ids.cpu()))
    return out


def finetune(model: T5, name: str, cfg: T5Config, ctx: RunContext, splits: dict[str, list[DatePair]]
             ) -> list[dict[str, float]]:
    """Train the whole model on the date pairs; fit keeps the best epoch by val exact match."""
    src = encode_sources([p.human for p in splits["train"]])                  # (N, S)
    tgt = encode_targets([p.iso for p in splits["train"]])                     # (N, ISO_LEN)
    # Same data order and dropout masks for both date models: only the starting weights differ.
    seed_everything(cfg.seed, cfg.threads)
    loader = DataLoader(TensorDataset(src, tgt), batch_size=cfg.finetune_batch_size, shuffle=True)
    phase_cfg = cfg.model_copy(update={"epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr,
                                       "batch_size": cfg.finetune_batch_size})
    val_texts = [p.human for p in splits["val"]]

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        assert isinstance(model, T5)
        src, tgt = batch
        width = int((src != PAD_ID).sum(1).max())                              # trim common padding
        return seq2seq_loss(model, src[:, :width], decoder_input(tgt), tgt)

    def evaluate(model: nn.Module) -> dict[str, float]:
        assert isinstance(model, T5)
        return {"val_exact": exact_match(translate(model, val_texts), splits["val"])}

    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=phase_cfg, ctx=_phase(ctx, name),
                 optimizer=make_optimizer(model, cfg.finetune_lr, cfg.weight_decay), monitor="val_exact")
    return result.history


def train(cfg: T5Config, ctx: RunContext) -> dict[str, float]:
    splits = date_splits(cfg.n_train, cfg.n_val, cfg.n_test)
    # Both date models start from the same random weights (the run's seed).
    model = build_model(cfg)
    scratch = build_model(cfg)
    scratch.load_state_dict(model.state_dict())

    history, context_free = pretrain(model, cfg, ctx)
    learning_curves(history, ctx.figure_path("span_pretraining.png"), f"{ctx.recipe}: span corruption")
    best = min(history, key=lambda row: row["val_span_loss"])                  # fit kept these weights
    metrics = {"val_span_loss": best["val_span_loss"], "val_span_acc": best["val_span_acc"],
               "context_free_span_loss": context_free}

    test_texts = [p.human for p in splits["test"]]
    for name, net in (("pretrained", model), ("scratch", scratch)):
        if name == "scratch" and not cfg.scratch:
            continue
        curves = finetune(net, name, cfg, ctx, splits)
        learning_curves(curves, ctx.figure_path(f"finetune_{name}.png"), f"{ctx.recipe}: {name}")
        net.eval()
        pred = translate(net, test_texts)
        metrics[f"{name}_exact"] = exact_match(pred, splits["test"])
        metrics[f"{name}_exact_beam"] = exact_match(translate(net, test_texts, cfg.beam), splits["test"])
        metrics[f"{name}_bleu"] = bleu(pred, splits["test"])
        metrics[f"{name}_first_epoch_val_exact"] = curves[0]["val_exact"]
    # The bar's metric: the pre-trained model's held-out exact match, greedy decoding.
    metrics["test_exact"] = metrics["pretrained_exact"]
    metrics["parameters"] = float(sum(p.numel() for p in model.parameters()))
    if cfg.scratch:
        bar_chart({"span pre-trained": metrics["pretrained_exact"], "from scratch": metrics["scratch_exact"]},
                  ctx.figure_path("test_exact.png"), "held-out exact match (greedy)",
                  f"dates -> ISO 8601, {cfg.finetune_epochs} epochs of {cfg.n_train} pairs")
    ctx.save_model(model)
    return metrics


RECIPE = register(Recipe(
    name="sequence.t5",
    step="1",
    topic="Transformers",
    summary="T5-style encoder-decoder: span-corruption pre-training on stdlib source, fine-tuned on dates -> ISO 8601.",
    config=T5Config,
    train=train,
    bar=Bar("test_exact", ">=", 0.98),
    # Quick: 200 span-corruption steps, then one short pass over the dates (too short to get
    # dates exactly right; it checks the pipeline). An untrained model scores ln(133) = 4.9
    # nats on the targets, and the best model that ignores the corrupted input (the targets'
    # own token frequencies) 3.3: < 3.0 needs the decoder to read the encoder's text.
    quick_bar=Bar("val_span_loss", "<", 3.0),
    budget_s=600,
    quick={"corpus_chars": 300_000, "epochs": 1, "steps_per_epoch": 200, "lr": 6e-3, "span_eval_windows": 64,
           "n_train": 3_000, "n_val": 200, "n_test": 500, "finetune_epochs": 1, "scratch": False,
           "beam": 3},
    build_model=build_model,
))

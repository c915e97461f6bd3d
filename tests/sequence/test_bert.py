"""sequence.bert: BERT masking statistics, the encoder's attention and padding, MLM learning,
the recipe's quick bar, save/load and determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aiforge.core import ConfigError, InputError, Result, load_model, run_recipe, seed_everything
from aiforge.data.text_corpus import VOCAB_SIZE, encode, read_corpus, split_text
from aiforge.sequence.bert import (
    TOKENIZER_FILE,
    BertConfig,
    accuracy_and_f1,
    build_model,
    load_classifier,
    make_optimizer,
    predict_labels,
    tokenized_corpus,
)
from aiforge.sequence.bert_data import (
    encode_padded,
    pack_lines,
    package_regions,
    snippet_splits,
    unlabelled_text,
)
from aiforge.sequence.bert_model import (
    MASK_ID,
    PAD_ID,
    BertEncoder,
    SelfAttention,
    alibi_bias,
    mlm_loss,
)
from aiforge.sequence.bpe import BPETokenizer, CharTokenizer
from aiforge.sequence.masking import IGNORE, mask_tokens

CHAR = CharTokenizer()

# The quick setting uses characters; the tiny runs take the BPE path with two learning rates.
TINY = {"tokenizer": "bpe", "bpe_vocab": 512, "corpus_chars": 20_000, "epochs": 1, "steps_per_epoch": 20,
        "mlm_eval_windows": 16, "n_train": 8, "n_val": 4, "n_test": 10, "finetune_epochs": 1,
        "finetune_lrs": (1e-3, 3e-3)}


def test_masking_selects_15_percent_and_splits_80_10_10() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB_SIZE, (200, 500), generator=gen)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, -100:] = False                                      # e.g. padding
    out = mask_tokens(ids, mask_id=MASK_ID, n_real=VOCAB_SIZE, maskable=maskable, generator=gen)
    selected = out.labels != IGNORE
    assert not selected[:, -100:].any()
    assert torch.equal(out.inputs[~selected], ids[~selected])      # only selected tokens change
    assert torch.equal(out.labels[selected], ids[selected])        # labels are the originals
    share = selected[:, :-100].float().mean().item()
    assert abs(share - 0.15) < 0.005                                # 80,000 draws: sd 0.0013
    n = selected.sum().item()
    masked = (out.inputs[selected] == MASK_ID).sum().item() / n
    kept = (out.inputs[selected] == ids[selected]).sum().item() / n
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.015
    # A random replacement equals the original 1 time in 98, which then counts as kept.
    assert abs(replaced - 0.1 * (1 - 1 / VOCAB_SIZE)) < 0.01
    assert abs(kept - (0.1 + 0.1 / VOCAB_SIZE)) < 0.01
    assert int(out.inputs.max()) <= MASK_ID and (out.inputs != PAD_ID).all()


def test_masking_is_reproducible_with_a_generator() -> None:
    ids = torch.randint(0, VOCAB_SIZE, (4, 64))
    a = mask_tokens(ids, mask_id=MASK_ID, n_real=VOCAB_SIZE, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(ids, mask_id=MASK_ID, n_real=VOCAB_SIZE, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)


@pytest.mark.parametrize("alibi", [False, True])
def test_self_attention_equals_torch_sdpa_with_padding(alibi: bool) -> None:
    seed_everything(0)  # also one torch thread: two stall on a busy 2-core machine
    attn = SelfAttention(16, 4, alibi=alibi).eval()
    x = torch.randn(3, 7, 16)
    keep = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [True] * 2 + [False] * 5])
    q, k, v = attn.qkv(x).split(16, dim=2)
    q, k, v = (t.view(3, 7, 4, 4).transpose(1, 2) for t in (q, k, v))          # (B, nh, T, hs)
    bias = alibi_bias(4, 7) if alibi else torch.zeros(4, 7, 7)
    float_mask = bias.masked_fill(~keep[:, None, None, :], float("-inf"))         # (B, nh, T, T)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask)
    ref = attn.proj(ref.transpose(1, 2).reshape(3, 7, 16))
    assert (attn(x, keep) - ref).abs().max() < 1e-5


def test_outputs_do_not_depend_on_padding() -> None:
    seed_everything(0)  # also one torch thread: two stall on a busy 2-core machine
    model = BertEncoder(max_len=40, n_layer=2, n_head=4, d_model=32, n_classes=3).eval()
    texts = ["import os", "def f(x):\n    return x"]
    short = encode_padded(texts, CHAR, PAD_ID)                      # (2, 22)
    long = torch.cat([short, torch.full((2, 15), PAD_ID)], dim=1)   # 15 more pads
    h_short, keep = model.encode(short)
    h_long, _ = model.encode(long)
    assert (h_long[:, :short.shape[1]][keep] - h_short[keep]).abs().max() < 1e-5
    assert (model(long) - model(short)).abs().max() < 1e-5
    alone = model(encode_padded(texts[:1], CHAR, PAD_ID))           # no padding at all
    assert (alone - model(short)[:1]).abs().max() < 1e-5


def test_mlm_loss_falls_on_tiny_data() -> None:
    seed_everything(0)  # also one torch thread: two stall on a busy 2-core machine
    ids = encode("the quick brown fox jumps over the lazy dog. " * 3)[:128].view(4, 32)
    model = BertEncoder(max_len=32, n_layer=2, n_head=4, d_model=48, n_classes=2)
    optimizer = make_optimizer(model, 3e-3, 0.0)
    gen = torch.Generator().manual_seed(1)
    fixed = mask_tokens(ids, mask_id=MASK_ID, n_real=VOCAB_SIZE, generator=gen)
    before = float(mlm_loss(model, fixed.inputs, fixed.labels))
    for _ in range(150):
        batch = mask_tokens(ids, mask_id=MASK_ID, n_real=VOCAB_SIZE, generator=gen)
        loss = mlm_loss(model, batch.inputs, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = float(mlm_loss(model.eval(), fixed.inputs, fixed.labels))
    assert after < 0.5 * before, (before, after)


def test_snippets_are_packed_lines_with_held_out_regions() -> None:
    assert pack_lines("a = 1\nb = 2\nc = 3\n", 11) == []              # too few visible characters
    assert pack_lines("x" * 20 + "\n" + "y" * 20, 30) == ["x" * 20, "y" * 20]
    data = snippet_splits(("json", "email"), 64, n_train=5, n_val=2, n_test=5)
    assert [len(data[k]) for k in ("train", "val", "test")] == [10, 4, 10]
    assert all(0 < len(s.text) <= 64 for split in data.values() for s in split)
    train_texts = {s.text for s in data["train"]}
    assert not train_texts & {s.text for s in data["test"]}


def _run(out: Path, **overrides: object) -> Result:
    return run_recipe("sequence.bert", quick=True, out=out, overrides=overrides, track=False, quiet=True)


def test_task_text_is_the_training_region_only() -> None:
    packages = ("email", "tkinter")
    text = unlabelled_text(packages, 128)
    splits = snippet_splits(packages, 128, n_train=16, n_val=8, n_test=100)
    assert all(s.text in text for s in splits["train"] + splits["val"])
    early = [e for package in packages for e in package_regions(package, 128)[0]]
    late_in_text = [s.text for s in splits["test"] if s.text in text]
    # Only code the packages repeat verbatim (a raise clause, a docstring line) can show up.
    assert len(late_in_text) < 0.05 * len(splits["test"])
    assert text == "\n".join(early)                                 # the late regions never


def test_pretraining_has_its_own_dropout() -> None:
    cfg = BertConfig(tokenizer="char", dropout=0.1, pretrain_dropout=0.0)
    assert build_model(cfg).dropout.p == 0.1 and build_model(cfg, dropout=cfg.pretrain_dropout).dropout.p == 0.0


def test_quick_setting_clears_its_bar(tmp_path: Path) -> None:
    result = _run(tmp_path / "run")
    assert result.passed, result.metrics
    assert result.metrics["val_mlm_loss"] < result.metrics["unigram_mlm_loss"]
    assert (tmp_path / "run" / "figures" / "test_accuracy.png").is_file()


def test_save_load_round_trip_and_same_seed_same_numbers(tmp_path: Path) -> None:
    first = _run(tmp_path / "a", **TINY)
    second = _run(tmp_path / "b", **TINY)
    assert first.metrics == second.metrics
    assert (tmp_path / "a" / "model" / TOKENIZER_FILE).is_file()       # the BPE travels with the model
    model, tokenizer, packages = load_classifier(tmp_path / "a")
    assert isinstance(tokenizer, BPETokenizer) and isinstance(load_model(tmp_path / "a"), BertEncoder)
    cfg = BertConfig.from_dict({**get_quick(), **TINY})
    assert packages == cfg.packages
    data = snippet_splits(cfg.packages, cfg.snippet_chars, cfg.n_train, cfg.n_val, cfg.n_test)
    acc, f1 = accuracy_and_f1(model, tokenizer, data["test"], len(cfg.packages))
    assert acc == pytest.approx(first.metrics["pretrained_acc"])     # the reloaded model is the one scored
    assert f1 == pytest.approx(first.metrics["pretrained_macro_f1"])
    assert first.metrics["pretrained_lr"] in cfg.finetune_lrs


def get_quick() -> dict[str, object]:
    from aiforge.core import get_recipe

    return dict(get_recipe("sequence.bert").quick)


def test_gathered_mlm_loss_equals_the_loss_over_all_positions() -> None:
    seed_everything(0)  # also one torch thread: two stall on a busy 2-core machine
    model = BertEncoder(max_len=32, n_layer=1, n_head=2, d_model=16, n_classes=2, vocab_size=300).eval()
    ids = torch.randint(0, 300, (4, 32))
    batch = mask_tokens(ids, mask_id=model.mask_id, n_real=300, generator=torch.Generator().manual_seed(1))
    full = F.cross_entropy(model.mlm_logits(batch.inputs).flatten(0, 1), batch.labels.flatten(),
                           ignore_index=IGNORE)
    assert (mlm_loss(model, batch.inputs, batch.labels) - full).abs() < 1e-5


def test_char_tokenizer_splits_the_corpus_as_before() -> None:
    cfg = BertConfig(tokenizer="char", corpus_chars=20_000, task_text=False)
    corpus = tokenized_corpus(cfg)
    before = split_text(read_corpus(None, 20_000), cfg.val_fraction)
    assert torch.equal(corpus.train, before.train) and torch.equal(corpus.val, before.val)
    # task_text appends the packages' text to the training split only
    with_task = tokenized_corpus(cfg.model_copy(update={"task_text": True}))
    assert torch.equal(with_task.train[:len(before.train)], before.train) and len(with_task.train) > len(before.train)
    assert torch.equal(with_task.val, before.val)
    assert corpus.chars_per_token == 1.0 and build_model(cfg).vocab_size == VOCAB_SIZE


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    model = BertEncoder(max_len=16, n_layer=1, n_head=2, d_model=16, n_classes=2).eval()
    with pytest.raises(InputError, match="empty"):
        predict_labels(model, CHAR, ["x = 1", ""])
    with pytest.raises(InputError, match="at most 16"):
        predict_labels(model, CHAR, ["x" * 17])
    with pytest.raises(ConfigError, match="two distinct packages"):
        _run(tmp_path / "run", packages=["email"])
    with pytest.raises(InputError, match="no standard-library package"):
        _run(tmp_path / "run2", packages=["email", "no_such_package"])
    with pytest.raises(ConfigError, match="snippet_chars 200 exceeds block_size"):
        _run(tmp_path / "run3", snippet_chars=200)
    with pytest.raises(ConfigError, match="learning rates"):
        _run(tmp_path / "run4", finetune_lrs=[])
    (tmp_path / "gpt" / "model").mkdir(parents=True)
    (tmp_path / "gpt" / "model" / "aiforge-model.json").write_text('{"recipe": "sequence.gpt", "config": {}}')
    with pytest.raises(InputError, match="is a run of"):
        load_classifier(tmp_path / "gpt")

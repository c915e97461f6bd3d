"""sequence.t5: span-corruption statistics and round trip, relative-position buckets, the
encoder-decoder's masks (padding, causality), learning, the recipe's quick bar, save/load
and determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aiforge.core import ConfigError, InputError, Result, load_model, run_recipe
from aiforge.data.dates import date_splits
from aiforge.data.text_corpus import VOCAB_SIZE, encode
from aiforge.sequence.seq2seq import exact_match
from aiforge.sequence.span_corruption import noise_mask, reconstruct, span_corrupt, span_counts
from aiforge.sequence.t5 import (
    T5Config,
    build_model,
    decoder_input,
    encode_sources,
    encode_targets,
    make_optimizer,
    translate,
)
from aiforge.sequence.t5_model import (
    EOS_ID,
    FIRST_SENTINEL,
    N_SENTINELS,
    PAD_ID,
    T5,
    Attention,
    relative_position_bucket,
    seq2seq_loss,
)

SPANS = {"first_sentinel": FIRST_SENTINEL, "n_sentinels": N_SENTINELS, "eos": EOS_ID}
TINY = {"corpus_chars": 20_000, "epochs": 1, "steps_per_epoch": 10, "span_eval_windows": 8,
        "n_train": 200, "n_val": 20, "n_test": 40, "finetune_epochs": 1, "scratch": True, "beam": 2}


def _run(out: Path, quick: bool = True, **overrides: object) -> Result:
    return run_recipe("sequence.t5", quick=quick, out=out, overrides=overrides, track=False, quiet=True)


# --- span corruption --------------------------------------------------------------------

def test_span_corruption_hides_15_percent_in_spans_of_mean_3() -> None:
    gen = torch.Generator().manual_seed(0)
    masks = torch.stack([noise_mask(100, 0.15, 3.0, gen) for _ in range(1000)])   # (N, L)
    assert (masks.sum(1) == 15).all()                        # round(100 * 0.15) in every window
    starts = masks & ~F.pad(masks, (1, 0))[:, :-1]           # first token of each noise span
    assert (starts.sum(1) == 5).all()                        # round(15 / 3) spans
    ends = masks & ~F.pad(masks, (0, 1))[:, 1:]              # last token of each noise span
    lengths = (ends.nonzero()[:, 1] - starts.nonzero()[:, 1] + 1).float()   # row-major order pairs them
    assert lengths.mean() == 3.0                             # exactly, by construction
    assert lengths.min() == 1 and lengths.max() >= 8 and lengths.std() > 1.0   # spans vary
    share = masks.float().mean(0)                            # (L,) how often each position is hidden
    assert share[5:-5].min() > 0.08 and share[5:-5].max() < 0.25
    assert share[0] > 0.02 and share[-1] > 0.02              # the ends too (T5's code: never / always)


def test_inputs_and_targets_reconstruct_the_text() -> None:
    gen = torch.Generator().manual_seed(1)
    text = encode("def reconstruct(inputs, targets):\n    return the original window, exactly.  ")
    windows = torch.stack([text[i:i + 48] for i in range(0, 28, 2)])               # (14, 48)
    batch = span_corrupt(windows, generator=gen, **SPANS)
    n_noise, n_spans = span_counts(48, 0.15, 3.0)
    assert batch.inputs.shape == (14, 48 - n_noise + n_spans + 1)
    assert batch.targets.shape == (14, n_noise + n_spans + 1)
    for inp, tgt, original in zip(batch.inputs, batch.targets, windows, strict=True):
        assert torch.equal(reconstruct(inp, tgt, FIRST_SENTINEL, N_SENTINELS, EOS_ID), original)
        sentinels = inp[inp >= FIRST_SENTINEL]                # numbered in order, once each
        assert torch.equal(sentinels, torch.arange(n_spans) + FIRST_SENTINEL)
        assert tgt[0] == FIRST_SENTINEL and tgt[-1] == EOS_ID and inp[-1] == EOS_ID
        assert (inp[:-1] != EOS_ID).all() and (tgt[:-1] != EOS_ID).all()


def test_span_corruption_refuses_more_spans_than_sentinels() -> None:
    with pytest.raises(ValueError, match="sentinels"):
        span_corrupt(torch.zeros(1, 400, dtype=torch.long), noise_density=0.5, mean_span=1.0, **SPANS)


# --- the model --------------------------------------------------------------------------

def test_relative_position_buckets() -> None:
    rel = torch.tensor([0, 1, -1, 7, -7, 8, 127, -1000, 1000])
    assert relative_position_bucket(rel, True, 32, 128).tolist() == [0, 17, 1, 23, 7, 24, 31, 15, 31]
    # The decoder's buckets look back only: every future distance shares bucket 0.
    assert relative_position_bucket(torch.tensor([0, 5, -1, -15, -16, -1000]), False, 32, 128).tolist() \
        == [0, 0, 1, 15, 16, 31]
    back = relative_position_bucket(-torch.arange(300), False, 32, 128)
    assert (back.diff() >= 0).all()                           # farther never maps nearer


@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_equals_torch_sdpa(with_bias: bool) -> None:
    torch.manual_seed(0)
    attn = Attention(32, 4, 0.0).eval()
    x, memory = torch.randn(3, 5, 32), torch.randn(3, 7, 32)
    keep = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    keep[1, ..., 4:] = False                                  # padding keys
    bias = torch.randn(1, 4, 5, 7) if with_bias else None
    out = attn(x, memory, keep, bias)
    q = attn.q(x).view(3, 5, 4, 8).transpose(1, 2)
    k, v = (t.view(3, 7, 4, 8).transpose(1, 2) for t in attn.kv(memory).split(32, dim=2))
    float_mask = torch.zeros(3, 4, 5, 7).masked_fill(~keep, float("-inf")) + (0 if bias is None else bias)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask)
    ref = attn.proj(ref.transpose(1, 2).reshape(3, 5, 32))
    assert torch.allclose(out, ref, atol=1e-5)


def _model() -> T5:
    torch.manual_seed(0)
    return T5(n_layer=2, n_head=4, d_model=32).eval()


def test_outputs_do_not_depend_on_encoder_padding() -> None:
    model = _model()
    src = encode_sources(["tue 3 march 1998"])                              # (1, 16)
    padded = F.pad(src, (0, 9), value=PAD_ID)                              # (1, 25)
    tgt_in = decoder_input(encode_targets(["1998-03-03"]))
    with torch.no_grad():
        a, b = model(src, tgt_in), model(padded, tgt_in)
        batch = model(encode_sources(["tue 3 march 1998", "the 23rd of september 2031"]),
                      tgt_in.expand(2, -1))
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a[0], batch[0], atol=1e-5)                       # padded inside a batch


def test_decoder_is_causal() -> None:
    model = _model()
    src = encode_sources(["03/03/98"])
    tgt_in = decoder_input(encode_targets(["1998-03-03"]))                 # (1, 11)
    changed = tgt_in.clone()
    changed[0, 6] = encode("7")[0]
    with torch.no_grad():
        a, b = model(src, tgt_in), model(src, changed)
    assert torch.equal(a[:, :6], b[:, :6])                                 # earlier logits unchanged
    assert not torch.allclose(a[:, 6:], b[:, 6:])                          # later ones see it


def test_learns_tiny_date_data_and_beam_1_is_greedy() -> None:
    torch.manual_seed(0)
    model = T5(n_layer=1, n_head=4, d_model=32)
    pairs = date_splits(16, 1, 1)["train"]
    src, tgt = encode_sources([p.human for p in pairs]), encode_targets([p.iso for p in pairs])
    opt = make_optimizer(model, 1e-2, 0.0)
    losses = []
    for _ in range(80):
        loss = seq2seq_loss(model, src, decoder_input(tgt), tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]                   # 4.9 nats (uniform) -> below 1.5
    model.eval()
    texts = [p.human for p in pairs]
    greedy = translate(model, texts)
    assert greedy == translate(model, texts, beam=1)


def test_translate_rejects_bad_text() -> None:
    model = _model()
    with pytest.raises(InputError, match="empty"):
        translate(model, [""])
    with pytest.raises(InputError, match="characters"):
        translate(model, ["x" * 200])


# --- the recipe -------------------------------------------------------------------------

def test_quick_setting_clears_its_bar(tmp_path: Path) -> None:
    result = _run(tmp_path / "run")
    assert result.passed, result.metrics
    assert result.metrics["val_span_loss"] < result.metrics["context_free_span_loss"]


def test_same_seed_same_numbers_and_reload(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "a", **TINY), _run(tmp_path / "b", **TINY)
    assert a.metrics == b.metrics
    model = load_model(tmp_path / "a")
    assert isinstance(model, T5)
    test = date_splits(TINY["n_train"], TINY["n_val"], TINY["n_test"])["test"]
    assert exact_match(translate(model, [p.human for p in test]), test) == a.metrics["test_exact"]
    assert torch.equal(model.embed.weight, load_model(tmp_path / "b").embed.weight)


def test_missing_corpus_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="corpus file not found"):
        T5Config.from_dict({"corpus_path": "/no/such/file.txt"})


def test_model_sizes_and_vocabulary() -> None:
    cfg = T5Config()
    model = build_model(cfg)
    assert model.embed.num_embeddings == VOCAB_SIZE + 3 + N_SENTINELS
    assert len(model.encoder) == len(model.decoder) == cfg.n_layer

"""The Kneser-Ney baseline is a proper distribution; the corpus is fixed and round-trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from aiforge.core.errors import InputError
from aiforge.data.text_corpus import (
    CHARS,
    VOCAB_SIZE,
    decode,
    encode,
    random_windows,
    read_corpus,
    split_text,
    stdlib_corpus,
)
from aiforge.sequence.ngram import KneserNeyCharModel

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog.\n" * 3


@pytest.mark.parametrize("order", [1, 3, 5])
@pytest.mark.parametrize("history", ["the c", "xyzzy", "", "og. "])
def test_kneser_ney_sums_to_one(order: int, history: str) -> None:
    model = KneserNeyCharModel(order, VOCAB_SIZE).fit(TEXT)
    total = sum(model.prob(history, ch) for ch in CHARS)
    assert math.isclose(total, 1.0, rel_tol=1e-9)


def test_higher_order_predicts_repetitive_text_better() -> None:
    test = "the dog sat on the log. a cat and a dog.\n"
    ce = [KneserNeyCharModel(n, VOCAB_SIZE).fit(TEXT).cross_entropy(test) for n in (1, 2, 4)]
    assert ce[0] > ce[1] > ce[2]
    assert ce[0] < math.log(VOCAB_SIZE)                         # better than uniform


def test_continuation_counts_of_lower_orders() -> None:
    """'b' follows 'a' many times but after one kind of character only: N1+(. ab) = 1."""
    model = KneserNeyCharModel(2, VOCAB_SIZE).fit("abababab")
    assert model.counts[2]["ab"] == 4
    assert model.counts[1]["b"] == 1                            # only 'ab' precedes 'b'


def test_encode_decode_round_trip_and_unknowns() -> None:
    assert decode(encode("def f(x):\n\treturn x ~ 1")) == "def f(x):\n\treturn x ~ 1"
    assert decode(encode("café")) == "caf?"
    assert len(CHARS) == VOCAB_SIZE == 98


def test_stdlib_corpus_is_fixed_and_large_enough() -> None:
    a, b = stdlib_corpus(1_000_000), stdlib_corpus(1_000_000)
    assert a == b and len(a) >= 1_000_000
    assert a.startswith("# ---- ")


def test_split_is_a_contiguous_tail() -> None:
    splits = split_text("abcdefghij" * 100, 0.1)
    assert len(splits.val) == 100 and decode(splits.val) == "abcdefghij" * 10


def test_random_windows_targets_are_shifted_inputs() -> None:
    data = torch.arange(50) % VOCAB_SIZE
    x, y = random_windows(data, 8, 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_bad_corpus_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_corpus(str(tmp_path / "missing.txt"), 1000)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00" * 1000)
    with pytest.raises(InputError, match="not UTF-8"):
        read_corpus(str(binary), 1000)
    short = tmp_path / "short.txt"
    short.write_text("tiny")
    with pytest.raises(InputError, match="at least 1000"):
        read_corpus(str(short), 1000)

"""aiforge.sequence.bpe: exact round trips on any text, the vocabulary size asked for, the same
merges every time, and a tokenizer that saves to JSON and loads back with the same ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiforge.core.errors import InputError
from aiforge.data.text_corpus import stdlib_corpus
from aiforge.sequence.bpe import BYTE_ALPHABET, BPETokenizer, CharTokenizer

CORPUS = stdlib_corpus(200_000)
UNICODE = [
    "", " ", "\n\n\t  \r\n", "def f(x):\n    return x ** 2  # squared\n",
    "naïve café, Ærøskøbing, straße", "Ελληνικά и русский", "日本語のテキスト、漢字",
    "emoji 🤖🧠 and flags 🇫🇷, ZWJ 👩‍💻", "\x00\x01\x7f\u2028\u200b\ufeff", "مرحبا بالعالم",
    "  leading and trailing spaces  ", "a" * 500,
]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(CORPUS, vocab_size=1000)


@pytest.mark.parametrize("text", UNICODE)
def test_round_trip_is_exact_on_any_text(bpe: BPETokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert ids.dtype == torch.long and (ids < bpe.vocab_size).all()
    assert bpe.decode(ids) == text


def test_round_trip_on_random_code_points(bpe: BPETokenizer) -> None:
    gen = torch.Generator().manual_seed(0)
    # all of Unicode's planes except the surrogates, which no valid str can hold
    points = torch.randint(1, 0x10FFFF, (2000,), generator=gen)
    text = "".join(chr(int(p)) for p in points if not 0xD800 <= int(p) <= 0xDFFF)
    assert bpe.decode(bpe.encode(text)) == text


def test_vocabulary_has_the_asked_size_and_compresses_code(bpe: BPETokenizer) -> None:
    assert bpe.vocab_size == 1000
    sample = CORPUS[-20_000:]
    assert len(sample) / len(bpe.encode(sample)) > 2.0           # merges learned: > 2 chars/token
    assert bpe.tokens(" return self") == ["Ġreturn", "Ġself"]      # frequent words are one token
    # a text too small for that many merges stops early rather than inventing symbols
    small = BPETokenizer.train("abab abab abab", vocab_size=1000)
    assert BYTE_ALPHABET < small.vocab_size < 1000


def test_same_text_same_merges() -> None:
    a = BPETokenizer.train(CORPUS[:50_000], vocab_size=600)
    b = BPETokenizer.train(CORPUS[:50_000], vocab_size=600)
    assert a.to_json() == b.to_json()


def test_save_and_load_give_the_same_ids(bpe: BPETokenizer, tmp_path: Path) -> None:
    path = bpe.save(tmp_path / "tokenizer.json")
    loaded = BPETokenizer.load(path)
    text = CORPUS[:5_000] + UNICODE[7]
    assert torch.equal(loaded.encode(text), bpe.encode(text))
    assert loaded.vocab_size == bpe.vocab_size
    assert [t.tolist() for t in loaded.encode_many(UNICODE[3:6])] == [bpe.encode(t).tolist() for t in UNICODE[3:6]]


def test_char_tokenizer_has_the_same_interface() -> None:
    char = CharTokenizer()
    assert char.vocab_size == 98
    assert char.decode(char.encode("def f():\n\treturn 1")) == "def f():\n\treturn 1"


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size >= 256"):
        BPETokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(InputError, match="not found"):
        BPETokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not a tokenizer file"):
        BPETokenizer.load(tmp_path / "bad.json")

"""Tokenizers for the transformer recipes: byte-level BPE, and characters with the same interface.

Byte-pair encoding (Sennrich et al., 2016) starts from single symbols and repeatedly merges
the most frequent adjacent pair in the training text into a new symbol, until the vocabulary
has the asked size; encoding replays the learned merges in order. *Byte-level* BPE (GPT-2,
Radford et al., 2019) starts from the 256 byte values instead of characters, so every
string, in any script, emoji included, encodes without an unknown token and decodes back
exactly. Before merging, a regular expression splits text into words, numbers, runs of
punctuation and runs of white space (GPT-2's pre-tokenizer), so that no merge crosses a word
boundary: "Ġdef" (space + def) becomes one token, "def(" never does.

The merges are learned by the Hugging Face `tokenizers` library (Rust); the whole tokenizer,
merges included, saves to one JSON file, which a run keeps beside its model so that the model
can be used again with the very same ids.

`CharTokenizer` wraps the fixed 98-symbol character vocabulary of aiforge.data.text_corpus in
the same interface, so a recipe can offer `tokenizer=char|bpe` and treat both alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from aiforge.core.errors import InputError
from aiforge.data import text_corpus

BYTE_ALPHABET = 256          # every byte value is a symbol before the first merge
TRAIN_CHUNK_LINES = 1_000    # lines handed to the trainer at once (memory only; same merges)


class TextTokenizer(Protocol):
    """What a recipe needs from a tokenizer: ids in [0, vocab_size) and back."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> torch.Tensor: ...

    def decode(self, ids: torch.Tensor | list[int]) -> str: ...


class CharTokenizer:
    """One id per character of the fixed 98-symbol vocabulary (others become '?')."""

    vocab_size = text_corpus.VOCAB_SIZE

    def encode(self, text: str) -> torch.Tensor:
        return text_corpus.encode(text)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        return text_corpus.decode(ids)


class BPETokenizer:
    """A trained byte-level BPE: `train` it on text, `encode`/`decode` exactly, `save`/`load`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int, min_frequency: int = 2) -> BPETokenizer:
        """Learn merges on `text` until `vocab_size` symbols (fewer if the text runs out of
        pairs seen at least `min_frequency` times). Deterministic: same text, same merges."""
        if vocab_size < BYTE_ALPHABET:
            raise ValueError(f"a byte-level BPE needs vocab_size >= {BYTE_ALPHABET}, got {vocab_size}")
        tok = Tokenizer(models.BPE())
        # add_prefix_space=False: nothing is added, so decode(encode(text)) is text itself.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
            # all 256 bytes from the start, even those the text lacks: no string is unknown
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(_line_chunks(text), trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def encode(self, text: str) -> torch.Tensor:
        """Text -> (N,) int64 token ids."""
        return torch.tensor(self._tok.encode(text).ids, dtype=torch.long)

    def encode_many(self, texts: list[str]) -> list[torch.Tensor]:
        """Several texts at once (the library encodes them in parallel)."""
        return [torch.tensor(e.ids, dtype=torch.long) for e in self._tok.encode_batch(texts)]

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return str(self._tok.decode(values, skip_special_tokens=False))

    def tokens(self, text: str) -> list[str]:
        """The learned symbols of `text` as the library prints them (Ġ is a space, Ċ a newline)."""
        return list(self._tok.encode(text).tokens)

    def to_json(self) -> str:
        return str(self._tok.to_str())

    def save(self, path: Path) -> Path:
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        if not path.is_file():
            raise InputError(f"tokenizer file not found: {path}")
        try:
            tok = Tokenizer.from_str(path.read_text(encoding="utf-8"))
        except Exception as err:  # the Rust side raises a bare Exception for malformed JSON
            raise InputError(f"{path} is not a tokenizer file: {str(err).splitlines()[0]}") from None
        if not isinstance(tok.model, models.BPE):
            raise InputError(f"{path} holds a {type(tok.model).__name__} tokenizer, not a BPE")
        return cls(tok)


def _line_chunks(text: str) -> Iterator[list[str]]:
    # Lines keep their newline, so merges such as "):\n" can be learned.
    lines = text.splitlines(keepends=True)
    for start in range(0, len(lines), TRAIN_CHUNK_LINES):
        yield lines[start:start + TRAIN_CHUNK_LINES]

"""Character-level text corpora that need no download.

The default corpus is the Python standard library's own source: the top-level `*.py` files of
the running interpreter's stdlib folder in sorted name order, concatenated until the corpus
reaches the asked size. It is real code and English (docstrings, comments), over 1 MB, and
the same on every machine with the same Python version. Any UTF-8 text file works instead.

Characters map to a fixed 98-symbol vocabulary: tab, newline, printable ASCII (space to '~')
and one symbol for everything else, so a model's vocabulary never depends on its corpus.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from aiforge.core.errors import InputError

UNKNOWN = "\x00"
CHARS = UNKNOWN + "\t\n" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(CHARS)
_INDEX = {ch: i for i, ch in enumerate(CHARS)}


def encode(text: str) -> torch.Tensor:
    """Text -> (N,) int64 ids; characters outside the vocabulary become UNKNOWN (id 0)."""
    return torch.tensor([_INDEX.get(ch, 0) for ch in text], dtype=torch.long)


def decode(ids: torch.Tensor | list[int]) -> str:
    values = ids.tolist() if isinstance(ids, torch.Tensor) else ids
    return "".join(CHARS[i] for i in values).replace(UNKNOWN, "?")


def stdlib_files() -> list[Path]:
    """The top-level .py files of this interpreter's standard library, sorted by name."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in folder.glob("*.py") if p.is_file())


def stdlib_corpus(min_chars: int) -> str:
    """Whole stdlib files, in sorted order, until at least `min_chars` characters."""
    parts, total = [], 0
    for path in stdlib_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(f"# ---- {path.name} ----\n{text}\n")
        total += len(parts[-1])
        if total >= min_chars:
            return "".join(parts)
    raise InputError(f"the stdlib at {stdlib_files()[0].parent} has only {total} characters, "
                     f"fewer than the {min_chars} asked for")


def read_corpus(path: str | None, min_chars: int) -> str:
    """The text of `path` (UTF-8), or the stdlib corpus when path is None."""
    if path is None:
        return stdlib_corpus(min_chars)
    file = Path(path)
    if not file.is_file():
        raise InputError(f"corpus file not found: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"corpus file {file} is not UTF-8 text: {err.reason} at byte {err.start}") from None
    if len(text) < 1000:
        raise InputError(f"corpus file {file} has {len(text)} characters; at least 1000 are needed")
    return text


@dataclass(frozen=True)
class TextSplits:
    train: torch.Tensor  # (N_train,) int64 character ids
    val: torch.Tensor    # (N_val,)


def split_text(text: str, val_fraction: float) -> TextSplits:
    """The last `val_fraction` of the text is validation: a contiguous tail, so no line of it
    also appears in training (a random split of windows would leak)."""
    ids = encode(text)
    cut = int(len(ids) * (1 - val_fraction))
    return TextSplits(ids[:cut], ids[cut:])


def random_windows(data: torch.Tensor, block: int, batch: int, gen: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` random windows: inputs x (B, block) and next-character targets y (B, block);
    gen None draws from torch's global RNG."""
    starts = torch.randint(0, len(data) - block - 1, (batch,), generator=gen)
    offsets = torch.arange(block)
    x = data[starts[:, None] + offsets]                            # (B, block)
    y = data[starts[:, None] + offsets + 1]                        # (B, block), shifted by one
    return x, y

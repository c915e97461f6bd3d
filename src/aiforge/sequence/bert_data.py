"""A labelled text set that needs no download: which standard-library package a snippet of
source comes from.

The snippets come from the `.py` files of a few stdlib *packages* (asyncio, email, http, ...,
test folders left out). The MLM pre-training corpus (aiforge.data.text_corpus) is made of the
stdlib's *top-level* modules; with `task_text` (sequence.bert's default) pre-training also
reads the packages' training region as plain text (`unlabelled_text`), never their test region.

A snippet is a run of consecutive source lines packed greedily up to `max_chars` characters
(a longer line is cut), so lengths vary and batches need padding. Within each package the
first 70% of its snippets (files in sorted order) feed training and validation, the last 30%
the test set: whole regions of code are held out, not random lines next to training lines.
Which snippets are drawn is fixed by DATA_SEED, a property of the data set, not of a run.
"""

from __future__ import annotations

import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from aiforge.core.errors import InputError
from aiforge.sequence.bpe import TextTokenizer

PACKAGES = ("asyncio", "email", "tkinter", "unittest")
DATA_SEED = 4242
TRAIN_SHARE = 0.7
MIN_VISIBLE = 16    # a snippet needs this many non-blank characters (skips blank-line runs)


@dataclass(frozen=True)
class Snippet:
    text: str
    label: int


def package_files(package: str) -> list[Path]:
    folder = Path(sysconfig.get_paths()["stdlib"]) / package
    if not folder.is_dir():
        raise InputError(f"no standard-library package {package!r} at {folder}")
    files = sorted(p for p in folder.rglob("*.py")
                   if not {"test", "tests", "idle_test"} & set(p.relative_to(folder).parts))
    if not files:
        raise InputError(f"standard-library package {package!r} has no source files")
    return files


def pack_lines(text: str, max_chars: int) -> list[str]:
    """Consecutive lines joined with newlines, each group as long as fits in max_chars."""
    out: list[str] = []
    current = ""
    for line in text.splitlines():
        line = line[:max_chars]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= max_chars:
            current = candidate
            continue
        out.append(current)
        current = line
    out.append(current)
    return [s for s in out if len("".join(s.split())) >= MIN_VISIBLE]


def package_snippets(package: str, max_chars: int) -> list[str]:
    snippets: list[str] = []
    for path in package_files(package):
        snippets += pack_lines(path.read_text(encoding="utf-8", errors="replace"), max_chars)
    return snippets


def package_regions(package: str, max_chars: int) -> tuple[list[str], list[str]]:
    """(early, late): the first 70% of a package's snippets (training and validation) and the
    last 30% (test)."""
    snippets = package_snippets(package, max_chars)
    cut = int(len(snippets) * TRAIN_SHARE)
    return snippets[:cut], snippets[cut:]


def unlabelled_text(packages: tuple[str, ...] | list[str], max_chars: int) -> str:
    """The early region of every package as plain text without labels, for task-adaptive
    pre-training; the late (test) region is never part of it."""
    return "\n".join(s for package in packages for s in package_regions(package, max_chars)[0])


def snippet_splits(packages: tuple[str, ...] | list[str], max_chars: int, n_train: int, n_val: int,
                   n_test: int) -> dict[str, list[Snippet]]:
    """{'train', 'val', 'test'}: per package n_train + n_val snippets drawn from its first 70%
    and n_test from its last 30%; every class has the same count (chance = 1 / classes)."""
    rng = random.Random(DATA_SEED)
    splits: dict[str, list[Snippet]] = {"train": [], "val": [], "test": []}
    for label, package in enumerate(packages):
        early, late = package_regions(package, max_chars)
        if len(early) < n_train + n_val or len(late) < n_test:
            raise InputError(f"package {package!r} has {len(early)}/{len(late)} snippets of at most "
                             f"{max_chars} characters; asked for {n_train + n_val}/{n_test}")
        drawn = rng.sample(early, n_train + n_val)
        splits["train"] += [Snippet(s, label) for s in drawn[:n_train]]
        splits["val"] += [Snippet(s, label) for s in drawn[n_train:]]
        splits["test"] += [Snippet(s, label) for s in rng.sample(late, n_test)]
    return splits


def encode_padded(texts: list[str], tokenizer: TextTokenizer, pad_id: int) -> torch.Tensor:
    """Texts -> (N, longest) token ids, right-padded with `pad_id`."""
    return pad_right([tokenizer.encode(t) for t in texts], pad_id)


def pad_right(sequences: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    """(L_i,) id sequences -> (N, max L_i), right-padded with `pad_id`."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for i, ids in enumerate(sequences):
        out[i, :len(ids)] = ids
    return out

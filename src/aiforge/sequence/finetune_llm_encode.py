"""Chat-template encoding and the response-only loss of `sequence.finetune-llm`.

Each prompt/response pair is rendered with the tokenizer's own chat template; prompt tokens
get the label IGNORE, the response and its end-of-turn token keep theirs, so the causal-LM
cross-entropy (and the held-out perplexity) measure the response alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from aiforge.core.errors import InputError
from aiforge.data.instructions import InstructionPair

IGNORE = -100  # label of a token the loss skips (prompt and padding)


# --- examples: chat template, response-only labels -----------------------------------------

@dataclass(frozen=True)
class Example:
    ids: list[int]
    labels: list[int]  # IGNORE on the prompt, the token ids on the response


def chat_prompt(tokenizer: Any, prompt: str) -> str:
    """The prompt as the model saw user turns in its own instruction tuning."""
    messages = [{"role": "user", "content": prompt}]
    text: str = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text


def encode_pair(tokenizer: Any, prompt: str, response: str, max_tokens: int) -> Example | None:
    """Token ids of the whole chat and labels that keep only the response (and its end-of-turn
    token, so the model learns to stop); None when the prompt alone fills `max_tokens`."""
    head = chat_prompt(tokenizer, prompt)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        tokenize=False)
    if not full.startswith(head):
        raise InputError("the tokenizer's chat template renders a reply that does not extend its "
                         "generation prompt; cannot tell prompt tokens from response tokens")
    tail = full[len(head):]
    end = tail.find(tokenizer.eos_token)  # drop what the template adds after the end of turn
    tail = tail[:end + len(tokenizer.eos_token)] if end >= 0 else tail
    # Head and tail are tokenized apart so the boundary between them is exact.
    head_ids = tokenizer(head, add_special_tokens=False).input_ids
    tail_ids = tokenizer(tail, add_special_tokens=False).input_ids
    if len(head_ids) >= max_tokens:
        return None
    ids = (head_ids + tail_ids)[:max_tokens]
    labels = ([IGNORE] * len(head_ids) + tail_ids)[:max_tokens]
    return Example(ids, labels)


def encode_all(tokenizer: Any, pairs: Sequence[InstructionPair], max_tokens: int) -> list[Example]:
    examples = [encode_pair(tokenizer, p.prompt, p.response, max_tokens) for p in pairs]
    kept = [e for e in examples if e is not None]
    if not kept:
        raise InputError(f"every prompt is longer than max_tokens={max_tokens}; raise it")
    return kept


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels, each (B, T)."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, :len(e.ids)] = torch.tensor(e.ids)
        labels[row, :len(e.labels)] = torch.tensor(e.labels)
        mask[row, :len(e.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --- the loss -------------------------------------------------------------------------------

def response_logits(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict a response token (N, V) and those tokens (N,).

    Position t predicts token t + 1. The output layer (49,152 words for SmolLM2) runs only on
    the positions from the earliest response start on (`logits_to_keep`), not on the prompt.
    """
    labels = batch["labels"]                                        # (B, T)
    width = labels.shape[1]
    first = int((labels != IGNORE).int().argmax(1).min())           # earliest response token
    keep = width - first + 1
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep).logits                      # (B, keep, V)
    logits = logits[:, :-1]                                         # predictions of first..T-1
    targets = labels[:, width - keep + 1:]                          # (B, keep - 1)
    chosen = targets != IGNORE
    return logits[chosen], targets[chosen]


def response_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the batch's response tokens."""
    logits, targets = response_logits(model, batch)
    return F.cross_entropy(logits, targets)


@torch.no_grad()
def response_nll(model: Any, examples: Sequence[Example], pad_id: int, batch_size: int) -> tuple[float, int]:
    """(total negative log-likelihood in nats, token count) over every response token."""
    ordered = sorted(examples, key=lambda e: len(e.ids))  # similar lengths pad less
    total, count = 0.0, 0
    for start in range(0, len(ordered), batch_size):
        logits, targets = response_logits(model, collate(ordered[start:start + batch_size], pad_id))
        total += float(F.cross_entropy(logits, targets, reduction="sum"))
        count += len(targets)
    return total, count


def unigram_ppl(train: Sequence[Example], test: Sequence[Example], vocab: int) -> float:
    """Perplexity of the test responses under add-one-smoothed response-token frequencies of
    the training set: what a model scores that ignores every prompt and every earlier token."""
    counts = torch.ones(vocab)
    for e in train:
        counts += torch.bincount(torch.tensor([t for t in e.labels if t != IGNORE]), minlength=vocab)
    log_p = (counts / counts.sum()).log()
    tokens = torch.tensor([t for e in test for t in e.labels if t != IGNORE])
    return math.exp(-float(log_p[tokens].mean()))

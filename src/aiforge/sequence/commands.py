"""`aiforge generate` (stream text from a trained sequence.gpt run) and `aiforge translate`
(human dates -> ISO 8601 with a trained sequence.seq2seq run).

Imports nothing heavy at module level: torch and the recipes load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiforge.core.errors import InputError

MAX_TOKENS = 100_000


def _load(run: Path, recipe: str) -> object:
    from aiforge.core.loading import load_model, load_model_config

    meta = load_model_config(run)
    if meta["recipe"] != recipe:
        raise InputError(f"{run} is a run of {meta['recipe']!r}, not {recipe!r}")
    return load_model(run)


def stream_text(run: Path, prompt: str, max_tokens: int, *, temperature: float = 0.8,
                top_k: int | None = None, top_p: float | None = 0.95, seed: int = 0) -> object:
    """An iterator of generated characters from the GPT saved in `run`."""
    if not 1 <= max_tokens <= MAX_TOKENS:
        raise InputError(f"--max-tokens must lie in 1..{MAX_TOKENS}, got {max_tokens}")
    if temperature < 0:
        raise InputError(f"--temperature must be >= 0, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise InputError(f"--top-p must lie in (0, 1], got {top_p}")
    if top_k is not None and top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {top_k}")
    import torch

    from aiforge.data.text_corpus import decode, encode
    from aiforge.sequence.gpt_model import GPT

    model = _load(run, "sequence.gpt")
    assert isinstance(model, GPT)
    ids = encode(prompt)[None] if prompt else torch.zeros(1, 1, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    return (decode(tok[0]) for tok in model.stream(ids, max_tokens, temperature=temperature,
                                                   top_k=top_k, top_p=top_p, generator=gen))


def register_commands(app: typer.Typer) -> None:
    @app.command()
    def generate(
        recipe: Annotated[str, typer.Argument(help="sequence.gpt or sequence.finetune-llm")],
        run: Annotated[Path, typer.Option("--run", help="Run folder (or its model/ folder).")],
        prompt: Annotated[str, typer.Option("--prompt", help="Text to continue.")] = "",
        max_tokens: Annotated[int, typer.Option("--max-tokens", help="Characters to generate.")] = 500,
        temperature: Annotated[float, typer.Option("--temperature", help="0 is greedy.")] = 0.8,
        top_k: Annotated[int | None, typer.Option("--top-k", help="Sample among the k best.")] = None,
        top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus mass.")] = 0.95,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the sampling.")] = 0,
    ) -> None:
        """Stream text from a trained language-model run (sequence.gpt continues the prompt;
        sequence.finetune-llm replies to it as a chat message)."""
        try:
            if recipe == "sequence.finetune-llm":
                _reply(run, prompt, max_tokens, temperature, top_k, seed)
                return
            if recipe != "sequence.gpt":
                raise InputError(f"cannot generate with {recipe!r}; generating recipes: "
                                 "sequence.gpt, sequence.finetune-llm")
            chars = stream_text(run, prompt, max_tokens, temperature=temperature, top_k=top_k,
                                top_p=top_p, seed=seed)
            typer.echo(prompt, nl=False)
            for ch in chars:  # type: ignore[attr-defined]
                typer.echo(ch, nl=False)
            typer.echo()
        except InputError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    def _reply(run: Path, prompt: str, max_tokens: int, temperature: float, top_k: int | None,
               seed: int) -> None:
        from aiforge.sequence.finetune_llm_chat import load_finetuned, stream_reply

        if top_k is not None:
            raise InputError("--top-k applies to sequence.gpt only")
        if not prompt.strip():
            raise InputError("--prompt is empty: sequence.finetune-llm replies to a message")
        if max_tokens < 1 or temperature < 0:
            raise InputError("--max-tokens must be >= 1 and --temperature >= 0")
        model, tokenizer = load_finetuned(run)
        for piece in stream_reply(model, tokenizer, prompt, max_tokens, temperature=temperature, seed=seed):
            typer.echo(piece, nl=False)
        typer.echo()

    @app.command()
    def translate(
        texts: Annotated[list[str], typer.Argument(help="Dates in any supported human format.")],
        run: Annotated[Path, typer.Option("--run", help="A sequence.seq2seq run folder.")],
        beam: Annotated[int, typer.Option("--beam", help="Beam width; 1 is greedy.")] = 1,
    ) -> None:
        """Translate human-written dates to ISO 8601 with a trained seq2seq run."""
        try:
            if not 1 <= beam <= 64:
                raise InputError(f"--beam must lie in 1..64, got {beam}")
            from aiforge.sequence.seq2seq import translate as run_translate
            from aiforge.sequence.seq2seq_model import Seq2Seq

            model = _load(run, "sequence.seq2seq")
            assert isinstance(model, Seq2Seq)
            for text, iso in zip(texts, run_translate(model, texts, beam), strict=True):
                typer.echo(f"{text}\t{iso}")
        except InputError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

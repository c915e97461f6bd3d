"""What `sequence.finetune-llm` writes for a reader: the loss curve, the general questions
answered before and after fine-tuning, and held-out samples."""

from __future__ import annotations

import math
from collections.abc import Sequence

from aiforge.core.context import RunContext
from aiforge.core.plots import plt
from aiforge.data.instructions import InstructionPair
from aiforge.sequence.finetune_llm_general import GENERAL_QUESTIONS, answer_has


def loss_figure(ctx: RunContext, losses: Sequence[float], base_ppl: float, tuned_ppl: float) -> None:
    """Training loss per step (and its running mean) against the held-out loss before and after."""
    window = max(1, len(losses) // 8)
    smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
              for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, color="#4c72b0", alpha=0.35, lw=0.8, label="training loss (batch)")
    ax.plot(steps, smooth, color="#4c72b0", label=f"training loss ({window}-step mean)")
    ax.axhline(math.log(base_ppl), color="#c44e52", ls="--", label=f"held-out, base (ppl {base_ppl:.2f})")
    ax.axhline(math.log(tuned_ppl), color="#55a868", ls="--",
               label=f"held-out, fine-tuned (ppl {tuned_ppl:.2f})")
    ax.set(xlabel="step", ylabel="response cross-entropy (nats/token)",
           title=f"{ctx.recipe}: LoRA fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("loss.png"), dpi=110)
    plt.close(fig)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "(empty)"


def general_report(ctx: RunContext, base: Sequence[str], tuned: Sequence[str]) -> dict[str, float]:
    """general_answers.md, and the counts: questions the base answers right, questions the tuned
    model answers right, and the share of the base's right answers the tuned model keeps (left
    out when the base knows none, as a random model does)."""
    lines = ["| question | expected | base | fine-tuned |", "|---|---|---|---|"]
    base_right = tuned_right = kept = 0
    for (question, words), b, t in zip(GENERAL_QUESTIONS, base, tuned, strict=False):
        b_ok, t_ok = answer_has(b, words), answer_has(t, words)
        base_right += b_ok
        tuned_right += t_ok
        kept += b_ok and t_ok
        mark = {True: "✓ ", False: "✗ "}
        lines.append(f"| {_cell(question)} | {' / '.join(words)} | {mark[b_ok]}{_cell(b)} | "
                     f"{mark[t_ok]}{_cell(t)} |")
    path = ctx.out / "general_answers.md"
    path.write_text("\n".join(lines) + "\n")
    ctx.add_artifact(path)
    counts = {"general_base_correct": float(base_right), "general_tuned_correct": float(tuned_right)}
    if base_right:
        counts["general_retained"] = kept / base_right
    return counts


def samples_report(ctx: RunContext, pairs: Sequence[InstructionPair], base: Sequence[str],
                   tuned: Sequence[str]) -> None:
    parts = []
    for pair, b, t in zip(pairs, base, tuned, strict=False):
        parts.append(f"### {pair.prompt}\n\n- **reference:** {pair.response}\n- **base:** {b}\n"
                     f"- **fine-tuned:** {t}\n")
    path = ctx.out / "samples.md"
    path.write_text("\n".join(parts) or "(no samples asked for)\n")
    ctx.add_artifact(path)


def write_reports(ctx: RunContext, losses: Sequence[float], base_ppl: float, tuned_ppl: float,
                  base_answers: Sequence[str], tuned_answers: Sequence[str],
                  samples: Sequence[InstructionPair]) -> dict[str, float]:
    """Every report file; returns the general-question counts."""
    loss_figure(ctx, losses, base_ppl, tuned_ppl)
    n = len(GENERAL_QUESTIONS)
    samples_report(ctx, samples, base_answers[n:], tuned_answers[n:])
    return general_report(ctx, base_answers[:n], tuned_answers[:n])

"""GPT training throughput and model FLOPs utilisation (MFU) on this machine.

Trains aiforge's GPT (sequence.gpt's model) at nanoGPT's CPU configuration (4 layers, 4 heads,
width 128, context 64, batch 12; see shared/TARGETS.md) on random tokens and reports tokens
per second and MFU = achieved model FLOP/s / measured fp32 matmul peak, both measured here
with the same thread count, in the same run. One JSON line per attention path on stdout.

    python bench/gpt.py --threads 2 --steps 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from aiforge.sequence.gpt import GPTConfig, build_model, flops_per_token, make_optimizer


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """Best fp32 GFLOP/s of an n x n x n matrix product (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def train_throughput(cfg: GPTConfig, steps: int, warmup: int = 5) -> tuple[float, float]:
    """(median tokens/s over timed steps, FLOPs per token) of full training steps."""
    model = build_model(cfg).train()
    optimizer = make_optimizer(model, cfg)
    x = torch.randint(0, model.tok_emb.num_embeddings, (cfg.batch_size, cfg.block_size + 1))
    rates = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            rates.append(cfg.batch_size * cfg.block_size / (time.perf_counter() - start))
    return statistics.median(rates), flops_per_token(model, cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    for use_sdpa in (False, True):
        cfg = GPTConfig(n_layer=4, n_head=4, d_model=128, block_size=64, batch_size=12,
                        dropout=0.0, use_sdpa=use_sdpa)
        tokens_per_s, flops = train_throughput(cfg, args.steps)
        print(json.dumps({
            "benchmark": "gpt_train_throughput", "attention": "sdpa" if use_sdpa else "hand-written",
            "threads": args.threads, "tokens_per_s": round(tokens_per_s),
            "model_gflops_per_s": round(tokens_per_s * flops / 1e9, 2),
            "matmul_peak_gflops_per_s": round(peak, 1),
            "mfu": round(tokens_per_s * flops / 1e9 / peak, 3),
            "peer": "nanoGPT (shared/TARGETS.md, 2 threads, idle machine)",
            "peer_tokens_per_s": "16000-18000", "peer_mfu": "0.42-0.53",
        }), flush=True)


if __name__ == "__main__":
    main()

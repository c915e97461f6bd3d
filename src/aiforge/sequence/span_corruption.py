"""T5's span-corruption objective (Raffel et al., 2020, sections 3.1.4 and 3.3.4).

A window of L tokens is split into alternating runs of kept and dropped ("noise") tokens.
round(L * noise_density) tokens are noise, in
round(noise / mean_span) spans, so the mean span length is mean_span (T5: density 0.15,
mean 3). Every noise span is replaced in the input by one sentinel token, and the target
lists each sentinel followed by the tokens it hid:

    text     t h e _ c a t _ s a t
    input    t h <S0> c a t <S1> t <EOS>
    target   <S0> e _ <S1> _ s a <EOS>

The encoder sees the corrupted text; the decoder writes only the missing pieces, which is
shorter than BERT's (every position) or a denoising auto-encoder's (the whole text) target:
the paper's Table 4 and 5 find it as good and cheaper. `reconstruct` inverts the corruption,
which is what the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SpanBatch:
    inputs: torch.Tensor    # (B, L - noise + spans + 1) corrupted ids, EOS-terminated
    targets: torch.Tensor   # (B, noise + spans + 1) sentinel, hidden span, ..., EOS


def span_counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """(noise tokens, noise spans) of a window; at least one of each and one kept token."""
    n_noise = min(max(round(length * noise_density), 1), length - 1)
    n_spans = max(min(round(n_noise / mean_span), n_noise, length - n_noise), 1)
    return n_noise, n_spans


def random_segmentation(n_items: int, n_segments: int, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """Split n_items into n_segments positive lengths, uniformly over all such splits:
    choose n_segments - 1 distinct cut points among the n_items - 1 gaps. -> (n_segments,)"""
    cuts = torch.randperm(n_items - 1, generator=generator)[:n_segments - 1] + 1
    bounds = torch.cat([torch.tensor([0]), cuts.sort().values, torch.tensor([n_items])])
    return bounds.diff()


def noise_mask(length: int, noise_density: float = 0.15, mean_span: float = 3.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """(L,) bool, True on noise tokens: kept runs and noise spans alternate.

    T5's code starts with a kept run and so always ends on a noise span (the window's last
    token is always hidden). Here the kept tokens fill n_spans + 1 gaps, the two outer ones
    possibly empty, so a span can sit anywhere, the ends included."""
    n_noise, n_spans = span_counts(length, noise_density, mean_span)
    noise_lengths = random_segmentation(n_noise, n_spans, generator)            # (spans,)
    gaps = random_segmentation(length - n_noise + 2, n_spans + 1, generator)    # (spans + 1,)
    gaps[0] -= 1                                                                # outer gaps may be 0
    gaps[-1] -= 1
    runs = torch.stack([gaps[:-1], noise_lengths], dim=1).flatten()             # kept, noise, ...
    runs = torch.cat([runs, gaps[-1:]])                                         # ..., kept
    is_noise = torch.tensor([False, True]).repeat(n_spans + 1)[:-1]             # (2 * spans + 1,)
    return is_noise.repeat_interleave(runs)                                     # (L,)


def corrupt(ids: torch.Tensor, mask: torch.Tensor, first_sentinel: int, eos: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """One window ids (L,) and its noise mask (L,) -> (input ids, target ids)."""
    starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])              # (L,) span starts
    sentinel = first_sentinel + starts.cumsum(0) - 1                             # (L,) span index
    # Input: kept tokens, and each noise span's first token becomes its sentinel.
    inputs = torch.where(starts, sentinel, ids)[~mask | starts]
    # Target: the noise tokens, each span preceded by its sentinel. A noise token moves right
    # by one slot for every sentinel written before it (its own span's included).
    span_starts = starts[mask]                                                  # (noise,)
    slot = torch.arange(len(span_starts)) + span_starts.cumsum(0)               # (noise,)
    targets = torch.empty(len(span_starts) + int(span_starts.sum()), dtype=ids.dtype)
    targets[slot] = ids[mask]
    targets[slot[span_starts] - 1] = sentinel[starts]
    end = torch.tensor([eos])
    return torch.cat([inputs, end]), torch.cat([targets, end])


def span_corrupt(ids: torch.Tensor, *, first_sentinel: int, n_sentinels: int, eos: int,
                 noise_density: float = 0.15, mean_span: float = 3.0,
                 generator: torch.Generator | None = None) -> SpanBatch:
    """Corrupt a batch of windows ids (B, L). Every window has the same numbers of noise
    tokens and spans, so inputs and targets need no padding. `generator` None draws from
    torch's global RNG."""
    if not 0 < noise_density < 1 or mean_span < 1:
        raise ValueError(f"bad span corruption: density {noise_density}, mean span {mean_span}")
    _, n_spans = span_counts(ids.shape[1], noise_density, mean_span)
    if n_spans > n_sentinels:
        raise ValueError(f"{n_spans} noise spans need more than the {n_sentinels} sentinels")
    pairs = [corrupt(row, noise_mask(len(row), noise_density, mean_span, generator), first_sentinel, eos)
             for row in ids]
    return SpanBatch(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))


def reconstruct(inputs: torch.Tensor, targets: torch.Tensor, first_sentinel: int, n_sentinels: int,
                eos: int) -> torch.Tensor:
    """Invert `corrupt` for one window: put the target's spans back at their sentinels."""
    def is_sentinel(i: int) -> bool:
        return first_sentinel <= i < first_sentinel + n_sentinels

    spans: dict[int, list[int]] = {}
    current = -1
    for tok in targets.tolist():
        if tok == eos:
            break
        if is_sentinel(tok):
            current = tok
            spans[current] = []
        else:
            spans[current].append(tok)
    out: list[int] = []
    for tok in inputs.tolist():
        if tok == eos:
            break
        out.extend(spans[tok] if is_sentinel(tok) else [tok])
    return torch.tensor(out, dtype=torch.long)

"""A smoothed character n-gram model: the baseline a neural language model must beat.

Interpolated Kneser-Ney (Kneser and Ney, 1995; Chen and Goodman, 1999, eq. 26), the
strongest classic smoothing for n-grams:

    P_n(w | h) = max(c_n(h w) - D_n, 0) / c_n(h .)  +  D_n * N1+(h .) / c_n(h .) * P_{n-1}(w | h')

h' is h without its oldest character. The highest order counts occurrences; every lower
order counts *continuations* N1+(. h w), the number of distinct characters seen before h w,
because a lower order is only consulted when the longer context was rare, and then what
matters is how many contexts a character completes, not how often it occurs. The discount
D_n = n1 / (n1 + 2 n2) comes from the count-of-counts (Ney et al., 1994). Below order 1 sits
the uniform distribution over the vocabulary, so no character has zero probability.
"""

from __future__ import annotations

import math
from collections import Counter


class KneserNeyCharModel:
    def __init__(self, order: int, vocab_size: int) -> None:
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.order, self.vocab_size = order, vocab_size
        # counts[n][h + w] for n = 1..order: raw counts at the top, continuation counts below.
        self.counts: list[Counter[str]] = [Counter() for _ in range(order + 1)]
        self.context_total: list[Counter[str]] = [Counter() for _ in range(order + 1)]
        self.context_types: list[Counter[str]] = [Counter() for _ in range(order + 1)]
        self.discount = [0.0] * (order + 1)

    def fit(self, text: str) -> KneserNeyCharModel:
        top = self.order
        self.counts[top] = Counter(text[i:i + top] for i in range(len(text) - top + 1))
        for n in range(top - 1, 0, -1):
            continuation: Counter[str] = Counter()
            for gram in self.counts[n + 1]:       # each distinct (n+1)-gram x h w adds 1 to h w
                continuation[gram[1:]] += 1
            self.counts[n] = continuation
        for n in range(1, top + 1):
            totals: Counter[str] = Counter()
            types: Counter[str] = Counter()
            for gram, count in self.counts[n].items():
                totals[gram[:-1]] += count
                types[gram[:-1]] += 1
            self.context_total[n], self.context_types[n] = totals, types
            of_count = Counter(self.counts[n].values())
            n1, n2 = of_count.get(1, 0), of_count.get(2, 0)
            # With no singletons the estimate is 0, which would give unseen characters zero
            # probability; fall back to the customary 0.75 there.
            self.discount[n] = n1 / (n1 + 2 * n2) if n1 > 0 else 0.75
        return self

    def prob(self, history: str, char: str) -> float:
        """P(char | the last order-1 characters of history)."""
        history = history[-(self.order - 1):] if self.order > 1 else ""
        p = 1.0 / self.vocab_size
        for n in range(1, len(history) + 2):      # from unigram up to the longest context
            h = history[len(history) - (n - 1):] if n > 1 else ""
            total = self.context_total[n].get(h, 0)
            if total == 0:
                continue                          # unseen context: keep the lower order's estimate
            d = self.discount[n]
            seen = max(self.counts[n].get(h + char, 0) - d, 0.0) / total
            p = seen + d * self.context_types[n][h] / total * p
        return p

    def cross_entropy(self, text: str) -> float:
        """Mean -ln P(text[i] | text[:i]) over i >= 1, in nats per character."""
        total = 0.0
        for i in range(1, len(text)):
            total -= math.log(self.prob(text[max(0, i - self.order + 1):i], text[i]))
        return total / max(1, len(text) - 1)



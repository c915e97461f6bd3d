"""A tracker wrapper for recipes that train several models in one run (seq2seq's three
decoders, fine-tuning's methods): each model's per-epoch curves get their own names."""

from __future__ import annotations

from typing import Any


class PrefixTracker:
    """Forwards everything to `inner`, logging metrics as `prefix/name`."""

    def __init__(self, inner: Any, prefix: str) -> None:
        self.inner, self.prefix, self.run_id = inner, prefix, inner.run_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics({f"{self.prefix}/{k}": v for k, v in metrics.items()}, step)

"""Our attention against F.scaled_dot_product_attention; KV-cache generation against none."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aiforge.sequence.attention import CausalSelfAttention, KVCache, scaled_dot_product_attention
from aiforge.sequence.gpt_model import GPT, sample_next

TOL = 1e-5


def _qkv(tq: int = 7, tk: int = 7, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, tq, 8, generator=gen), torch.randn(2, 3, tk, 8, generator=gen),
            torch.randn(2, 3, tk, 5, generator=gen))


def test_attention_matches_sdpa_without_mask() -> None:
    q, k, v = _qkv(tq=4, tk=9)
    want = F.scaled_dot_product_attention(q, k, v)
    assert (scaled_dot_product_attention(q, k, v) - want).abs().max() <= TOL


def test_attention_matches_sdpa_causal() -> None:
    q, k, v = _qkv()
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (scaled_dot_product_attention(q, k, v, causal=True) - want).abs().max() <= TOL


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_sdpa_with_padding(causal: bool) -> None:
    q, k, v = _qkv()
    lengths = torch.tensor([7, 4])                                   # second sequence padded
    keep = torch.arange(7)[None, :] < lengths[:, None]               # (B, Tk)
    mask = keep[:, None, None, :]                                    # (B, 1, 1, Tk)
    full = mask & torch.ones(7, 7, dtype=torch.bool).tril() if causal else mask
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=full)
    got = scaled_dot_product_attention(q, k, v, causal=causal, mask=mask)
    assert (got - want).abs().max() <= TOL


def test_attention_gradients_match_sdpa() -> None:
    q, k, v = (t.requires_grad_() for t in _qkv())
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    scaled_dot_product_attention(q, k, v, causal=True).square().sum().backward()
    F.scaled_dot_product_attention(q2, k2, v2, is_causal=True).square().sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        assert a.grad is not None and b.grad is not None
        assert (a.grad - b.grad).abs().max() <= TOL


def test_cached_queries_see_all_past_keys() -> None:
    """With a cache, the last queries are bottom-right aligned: equal to the rows of a full run."""
    q, k, v = _qkv(tq=9, tk=9)
    full = scaled_dot_product_attention(q, k, v, causal=True)
    tail = scaled_dot_product_attention(q[..., -3:, :], k, v, causal=True)
    assert (tail - full[..., -3:, :]).abs().max() <= TOL


def test_self_attention_with_cache_equals_full_pass() -> None:
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    full = attn(x)
    cache = KVCache()
    steps = [attn(x[:, :3], cache)] + [attn(x[:, t:t + 1], cache) for t in range(3, 6)]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL


def test_sdpa_path_equals_manual_path() -> None:
    torch.manual_seed(0)
    manual = CausalSelfAttention(16, 4).eval()
    fused = CausalSelfAttention(16, 4, use_sdpa=True).eval()
    fused.load_state_dict(manual.state_dict())
    x = torch.randn(2, 6, 16)
    assert (manual(x) - fused(x)).abs().max() <= TOL


@pytest.mark.parametrize("sampling", [{"temperature": 0.0},
                                      {"temperature": 1.0, "top_k": 5},
                                      {"temperature": 0.9, "top_p": 0.8}])
def test_kv_cache_generation_equals_no_cache(sampling: dict[str, float]) -> None:
    torch.manual_seed(0)
    model = GPT(vocab_size=20, block_size=12, n_layer=2, n_head=2, d_model=16).eval()
    prompt = torch.randint(0, 20, (2, 3))
    # 15 new tokens pass the 12-token window, so the cache is rebuilt past it.
    outs = [model.generate(prompt, 15, use_cache=cache, generator=torch.Generator().manual_seed(1),
                           **sampling) for cache in (True, False)]  # type: ignore[arg-type]
    assert torch.equal(outs[0], outs[1])
    assert outs[0].shape == (2, 18)


def test_top_k_and_top_p_restrict_the_support() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    top_k = {int(sample_next(logits, 1.0, top_k=2, generator=gen)) for _ in range(200)}
    top_p = {int(sample_next(logits, 1.0, top_p=0.7, generator=gen)) for _ in range(200)}
    assert top_k == {0, 1}
    assert top_p == {0, 1}                                           # 0.5 + 0.3 reaches 0.7
    assert int(sample_next(logits, 0.0)) == 0


def test_generation_rejects_context_overflow_in_forward() -> None:
    model = GPT(vocab_size=10, block_size=4, n_layer=1, n_head=1, d_model=8)
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 5, dtype=torch.long))

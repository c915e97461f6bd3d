"""Printed digits: shapes, determinism, sizes that share glyphs, size normalisation, bad size."""

import numpy as np
import pytest
import torch

from aiforge.data.printed_digits import fill_height, font_paths, render_printed_digits


def test_fonts_ship_with_matplotlib():
    assert len(font_paths()) >= 10


def test_shapes_labels_range_and_seed():
    x, y = render_printed_digits(30, seed=3)
    assert x.shape == (30, 1, 8, 8) and x.dtype == torch.float32
    assert y.tolist() == [i % 10 for i in range(30)]
    assert x.min() >= 0 and x.max() <= 1 and x.mean() > 0.1
    assert torch.equal(x, render_printed_digits(30, seed=3)[0])
    assert not torch.equal(x, render_printed_digits(30, seed=4)[0])


@pytest.mark.parametrize("size", [16, 32])
def test_every_size_holds_the_same_glyphs(size):
    small, _ = render_printed_digits(12, seed=0)
    big, _ = render_printed_digits(12, seed=0, size=size)
    block = size // 8
    assert big.shape == (12, 1, size, size)
    pooled = big.view(12, 1, 8, block, 8, block).mean(dim=(3, 5))   # block means down to 8x8
    assert torch.allclose(pooled, small, atol=1e-6)


def test_size_must_divide_the_canvas():
    with pytest.raises(ValueError, match="divide 32"):
        render_printed_digits(2, seed=0, size=12)


def test_fill_height_scales_to_full_height_and_caps_the_width():
    bitmap = np.zeros((32, 32), dtype=np.float32)
    bitmap[10:18, 12:14] = 1.0                       # 8 tall, 2 wide: a thin bar
    out = fill_height(bitmap)
    rows, cols = np.nonzero(out > 0.1)
    assert rows.min() == 0 and rows.max() == 31      # spans the full height
    assert cols.max() - cols.min() + 1 <= 10         # aspect kept: about 8 wide
    wide = np.zeros((32, 32), dtype=np.float32)
    wide[14:18, 0:32] = 1.0                          # 4 tall, 32 wide
    cols = np.nonzero(fill_height(wide) > 0.1)[1]
    assert cols.max() - cols.min() + 1 <= 24         # width capped at 3/4 of the canvas
    empty = np.zeros((32, 32), dtype=np.float32)
    assert np.array_equal(fill_height(empty), empty)


def test_normalised_digits_span_every_row_like_the_handwritten_ones():
    x, _ = render_printed_digits(40, seed=0, normalize_size=True)
    ink_rows = (x[:, 0] > 2 / 16).any(dim=2).sum(dim=1)             # (40,)
    assert (ink_rows == 8).all()
    plain, _ = render_printed_digits(40, seed=0)
    assert ((plain[:, 0] > 2 / 16).any(dim=2).sum(dim=1) < 8).any(), "without it sizes vary"

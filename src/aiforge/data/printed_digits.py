"""Printed digits: 0-9 rendered offline from the TrueType fonts that ship inside matplotlib.

scikit-learn's handwritten digits were made from 32x32 bitmaps summed over 4x4 blocks into
8x8 images (UCI "optdigits"). Printed digits are made the same way here, so the two sets
share a size, a value range and a blur, and differ in what matters: the strokes. Two areas
use them: vision.transfer pre-trains on them (a source task for transfer learning) and
generative.cyclegan translates between them and the handwritten digits (two unpaired
domains).

Each image is digit i % 10, drawn white on black on a 32x32 canvas in one of 14 fonts, with
random size, stroke width, slant, width and rotation (to come closer to handwriting), then
averaged over (32 / size)-pixel blocks. The result depends only on (n, seed, size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CANVAS = 32  # the bitmap size the UCI digits were drawn at
FONTS = ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSansMono",
         "DejaVuSansMono-Bold", "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic",
         "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "cmr10", "cmss10", "cmtt10")


def font_paths() -> list[str]:
    """TrueType fonts that ship inside matplotlib (so offline everywhere) and hold digits."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [str(folder / f"{name}.ttf") for name in FONTS if (folder / f"{name}.ttf").is_file()]


def fill_height(bitmap: np.ndarray) -> np.ndarray:
    """Scale the ink's bounding box to the full canvas height, keeping its aspect ratio with
    the width capped at 3/4 of the canvas, and centre it: the size normalisation of the UCI
    digits (each of scikit-learn's 1,797 images spans all 8 rows; none spans all 8 columns
    and 97 % span at most 6). (H, W) in [0, 1] -> (H, W)."""
    from PIL import Image

    rows, cols = np.nonzero(bitmap > 0.1)
    if len(rows) == 0:
        return bitmap
    crop = bitmap[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    side = bitmap.shape[0]
    new_w = max(1, min(3 * side // 4, round(w * side / h)))
    scaled = Image.fromarray(crop).resize((new_w, side), Image.Resampling.BILINEAR)
    out = np.zeros_like(bitmap)
    left = (side - new_w) // 2
    out[:, left:left + new_w] = np.clip(np.asarray(scaled), 0, 1)
    return out


def render_printed_digits(n: int, seed: int, size: int = 8,
                          normalize_size: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, size, size) in [0, 1] and labels (N,) = arange(N) % 10.

    `size` must divide 32: 8 gives the block means of the UCI / scikit-learn digits, 32 the
    bitmaps themselves. `normalize_size` scales every glyph to the full height first
    (`fill_height`), as the UCI digits were; without it glyphs keep their random size. The
    random draws depend on neither, so the same seed gives the same glyphs either way."""
    if size <= 0 or CANVAS % size:
        raise ValueError(f"size must divide {CANVAS}, got {size}")
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    fonts = font_paths()
    block = CANVAS // size
    images = np.zeros((n, size, size), dtype=np.float32)
    labels = np.arange(n) % 10
    for i, digit in enumerate(labels):
        font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], size=float(rng.uniform(26, 36)))
        canvas = Image.new("L", (CANVAS, CANVAS), 0)
        draw = ImageDraw.Draw(canvas)
        left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
        x = (CANVAS - (right - left)) / 2 - left + rng.uniform(-2, 2)
        y = (CANVAS - (bottom - top)) / 2 - top + rng.uniform(-2, 2)
        draw.text((x, y), str(digit), fill=255, font=font, stroke_width=int(rng.integers(0, 3)),
                  stroke_fill=255)
        # affine map about the centre: output (u, v) samples input (a u + b v + c, d u + e v + f)
        shear, widen = rng.uniform(-0.35, 0.35), rng.uniform(0.8, 1.3)
        a, b, d, e = widen, shear, 0.0, 1.0
        half = CANVAS / 2
        c, f = half - a * half - b * half, half - d * half - e * half
        canvas = canvas.transform((CANVAS, CANVAS), Image.Transform.AFFINE, (a, b, c, d, e, f),
                                  resample=Image.Resampling.BILINEAR)
        canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
        bitmap = np.asarray(canvas, dtype=np.float32) / 255                   # (32, 32)
        if normalize_size:
            bitmap = fill_height(bitmap)
        images[i] = bitmap.reshape(size, block, size, block).mean(axis=(1, 3))  # block means
    return torch.from_numpy(images)[:, None], torch.from_numpy(labels.astype(np.int64))

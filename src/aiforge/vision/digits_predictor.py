"""How the digits CNN answers requests: an 8x8 digit (scikit-learn's 0-16 scale) or a PNG
in, the digit and every class's probability out.

A PNG of any size is read the way the UCI digits were made: grey levels, ink bright on a dark
ground (a dark-on-light drawing is inverted), averaged down to 8x8 and put on the 0-16
scale. The graph that ONNX Runtime may run instead of PyTorch is the CNN plus its softmax.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import ConfigDict, Field, model_validator
from torch import nn

from aiforge.core.errors import InputError
from aiforge.core.loading import load_model
from aiforge.core.predictor import ApiModel, TensorPredictor, TensorSpec

SIDE = 8
SCALE = 16.0  # scikit-learn's digits count ink in 0..16
Row = Annotated[list[Annotated[float, Field(ge=0, le=SCALE)]], Field(min_length=SIDE, max_length=SIDE)]
_ONE = [[0, 0, 0, 12, 13, 5, 0, 0], [0, 0, 0, 11, 16, 9, 0, 0], [0, 0, 3, 15, 16, 6, 0, 0],
        [0, 7, 15, 16, 16, 2, 0, 0], [0, 0, 1, 16, 16, 3, 0, 0], [0, 0, 1, 16, 16, 6, 0, 0],
        [0, 0, 1, 16, 16, 6, 0, 0], [0, 0, 0, 11, 16, 10, 0, 0]]  # scikit-learn's digits[1], a 1


class DigitRequest(ApiModel):
    """One digit: `pixels` (8 rows of 8 values, 0 = no ink, 16 = full ink) or `png` (a base64
    PNG or JPEG of any size, ink on a plain ground), not both."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"pixels": _ONE}]})

    pixels: Annotated[list[Row], Field(min_length=SIDE, max_length=SIDE)] | None = None
    """8x8 ink values on scikit-learn's 0-16 scale, row by row."""
    png: str | None = Field(None, max_length=2_000_000)
    """A base64-encoded PNG or JPEG image of one digit."""

    @model_validator(mode="after")
    def _exactly_one(self) -> DigitRequest:
        if (self.pixels is None) == (self.png is None):
            raise ValueError("give exactly one of 'pixels' and 'png'")
        return self


class DigitResponse(ApiModel):
    label: int
    """The most probable digit."""
    probabilities: list[float]
    """Probability of each digit 0..9."""


def image_to_pixels(data: bytes) -> np.ndarray:
    """A PNG/JPEG's bytes -> (8, 8) float32 ink on the 0-16 scale."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"the image does not decode: {err}") from None
    if grey.mean() > 0.5:  # dark ink on light paper: UCI digits count ink, so invert
        grey = 1.0 - grey
    resized = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(grey)[None, None], SIDE)
    return (resized[0, 0].numpy() * SCALE).astype(np.float32)


def _pixels(request: DigitRequest) -> np.ndarray:
    if request.pixels is not None:
        return np.asarray(request.pixels, dtype=np.float32)
    try:
        data = base64.b64decode(request.png or "", validate=True)
    except (binascii.Error, ValueError):
        raise InputError("'png' is not valid base64") from None
    return image_to_pixels(data)


class DigitsPredictor(TensorPredictor[DigitRequest, DigitResponse]):
    Request = DigitRequest
    Response = DigitResponse
    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("pixels", "FP32", (-1, 1, SIDE, SIDE)),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("probabilities", "FP32", (-1, 10)),)

    def preprocess(self, requests: Sequence[DigitRequest]) -> dict[str, np.ndarray]:
        x = np.stack([_pixels(r) for r in requests]) / SCALE        # (B, 8, 8) in [0, 1]
        return {"pixels": x[:, None].astype(np.float32)}             # (B, 1, 8, 8)

    def postprocess(self, requests: Sequence[DigitRequest],
                    outputs: dict[str, np.ndarray]) -> list[DigitResponse]:
        probs = outputs["probabilities"]                             # (B, 10)
        return [DigitResponse(label=int(p.argmax()), probabilities=[round(float(v), 6) for v in p])
                for p in probs]

    def features(self, requests: Sequence[DigitRequest]) -> np.ndarray:
        """The 64 ink values (0-1) of each digit: what drift detection compares."""
        return self.preprocess(requests)["pixels"].reshape(len(requests), SIDE * SIDE)


def digits_predictor(folder: Path, meta: dict[str, Any]) -> DigitsPredictor:
    graph = nn.Sequential(load_model(folder), nn.Softmax(dim=-1))
    return DigitsPredictor(str(meta["recipe"]), meta, graph)

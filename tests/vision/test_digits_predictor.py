"""The digits CNN's predictor: the offline model's answers, alone or batched, from pixels or
a PNG; bad requests refused with a reason."""

import base64
import io

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from aiforge.core import InputError, load_model, run_recipe
from aiforge.core.loading import load_predictor
from aiforge.data.digits import digits_splits
from aiforge.vision.digits_predictor import DigitRequest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    run_recipe("vision.cnn-digits", quick=True, out=out, quiet=True, track=False)
    return out


def _png(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_answers_equal_the_offline_model_and_batching_changes_nothing(run_dir):
    test = digits_splits()["test"]
    requests = [DigitRequest(pixels=(x[0] * 16).tolist()) for x in test.x[:40].numpy()]
    predictor = load_predictor(run_dir)
    batched = predictor.predict(requests)
    alone = [predictor.predict([r])[0] for r in requests[:5]]
    with torch.no_grad():
        expected = torch.softmax(load_model(run_dir)(test.x[:40]), -1).numpy()
    assert [r.label for r in batched] == expected.argmax(1).tolist()
    np.testing.assert_allclose([r.probabilities for r in batched], expected, atol=1e-5)
    assert alone == batched[:5]
    accuracy = np.mean([r.label == int(y) for r, y in zip(batched, test.y[:40], strict=True)])
    assert accuracy >= 0.9


def test_a_png_reads_like_the_digit_it_shows(run_dir):
    """A digit drawn dark on white at 64x64 reads like the same digit given as 8x8 ink."""
    test = digits_splits()["test"]
    predictor = load_predictor(run_dir)
    hits = 0
    for x, y in zip(test.x[:20].numpy(), test.y[:20].tolist(), strict=True):
        big = np.kron(x[0], np.ones((8, 8)))                      # (64, 64) ink in [0, 1]
        drawn = ((1.0 - big) * 255).astype(np.uint8)                # dark ink on white paper
        hits += predictor.predict([DigitRequest(png=_png(drawn))])[0].label == y
    assert hits >= 17


@pytest.mark.parametrize(("body", "reason"), [
    ({}, "exactly one of 'pixels' and 'png'"),
    ({"pixels": [[0.0] * 8] * 7}, "at least 8 items"),
    ({"pixels": [[17.0] * 8] * 8}, "less than or equal to 16"),
    ({"pixels": [[False] * 8] * 8}, "valid number"),
    ({"pixels": [[0.0] * 8] * 8, "png": "AAAA"}, "exactly one"),
    ({"pixels": [[0.0] * 8] * 8, "colour": 1}, "Extra inputs are not permitted"),
])
def test_a_request_that_breaks_the_schema_names_the_problem(body, reason):
    with pytest.raises(ValidationError, match=reason):
        DigitRequest.model_validate(body)


def test_an_image_that_does_not_decode_is_refused_and_the_predictor_keeps_answering(run_dir):
    predictor = load_predictor(run_dir)
    with pytest.raises(InputError, match="does not decode"):
        predictor.predict([DigitRequest(png=base64.b64encode(b"not an image").decode())])
    with pytest.raises(InputError, match="not valid base64"):
        predictor.predict([DigitRequest(png="%%%")])
    assert predictor.predict(predictor.examples())[0].label == 1


def test_features_are_the_ink_values(run_dir):
    predictor = load_predictor(run_dir)
    features = predictor.features(predictor.examples())
    assert features.shape == (1, 64) and features.min() >= 0.0 and features.max() <= 1.0

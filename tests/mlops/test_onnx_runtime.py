"""A predictor's graph exported to ONNX answers like PyTorch, through the same predictor."""

import numpy as np
import pytest

from aiforge.core import run_recipe
from aiforge.core.loading import load_predictor
from aiforge.data.digits import digits_splits
from aiforge.mlops.onnx_runtime import (
    OnnxRuntime,
    ParityError,
    check_parity,
    export_graph,
    onnx_runtime_for,
)
from aiforge.vision.digits_predictor import DigitRequest


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    run_recipe("vision.cnn-digits", quick=True, out=out, overrides={"epochs": "2"}, quiet=True, track=False)
    return load_predictor(out)


def test_onnx_runtime_gives_the_torch_answers_at_any_batch_size(predictor):
    requests = [DigitRequest(pixels=(x[0] * 16).tolist()) for x in digits_splits()["test"].x[:33].numpy()]
    on_torch = predictor.predict(requests)
    predictor.use_runtime(onnx_runtime_for(predictor))
    try:
        on_onnx = predictor.predict(requests)
        assert [r.label for r in on_onnx] == [r.label for r in on_torch]
        np.testing.assert_allclose([r.probabilities for r in on_onnx],
                                   [r.probabilities for r in on_torch], atol=1e-5)
        assert predictor.predict(requests[:1]) == on_onnx[:1]
    finally:
        from aiforge.core.predictor import TorchRuntime

        predictor.use_runtime(TorchRuntime(predictor.graph, predictor.inputs, predictor.outputs))


def test_export_writes_a_file_that_loads(predictor, tmp_path):
    path = tmp_path / "digits.onnx"
    export_graph(predictor, path)
    runtime = OnnxRuntime(path, predictor.outputs)
    assert check_parity(predictor, runtime) < 1e-4


def test_a_graph_that_answers_differently_is_refused(predictor):
    class Off:
        name = "off"

        def run(self, inputs):
            out = OnnxRuntime(export_graph(predictor), predictor.outputs).run(inputs)
            return {k: v + 1e-2 for k, v in out.items()}

    with pytest.raises(ParityError, match="differs by up to"):
        check_parity(predictor, Off())

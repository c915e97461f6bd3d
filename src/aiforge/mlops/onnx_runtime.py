"""A predictor's tensor graph as ONNX, run by ONNX Runtime instead of PyTorch.

`export_graph` writes any `TensorPredictor`'s graph (traced on the predictor's documented
examples, every -1 axis of its specs dynamic); `OnnxRuntime` runs it behind the same
`TensorRuntime` interface, so the predictor's pre- and post-processing do not change;
`check_parity` compares the two runtimes on the examples before a server trusts the
exported graph. ONNX Runtime's kernels round differently from PyTorch's: the default
tolerance (`ATOL`, `RTOL`) is what float32 graphs of this size meet, and a graph that
misses it is refused, not served.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiforge.core.errors import InputError
from aiforge.core.predictor import TensorPredictor, TensorRuntime, TensorSpec

OPSET = 17
ATOL = 1e-4
RTOL = 1e-3


class ParityError(InputError):
    """ONNX Runtime's outputs differ from PyTorch's beyond the tolerance."""


def _dynamic_axes(specs: Sequence[TensorSpec]) -> dict[str, dict[int, str]]:
    return {s.name: {i: f"{s.name}_{i}" for i, d in enumerate(s.shape) if d == -1} for s in specs}


def export_graph(predictor: TensorPredictor[Any, Any], path: Path | None = None) -> bytes:
    """The predictor's graph as an ONNX model (bytes); also written to `path` if given."""
    example = predictor.example_inputs()
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[s.name])) for s in predictor.inputs)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter warns about itself
        warnings.simplefilter("ignore")
        torch.onnx.export(
            predictor.graph.eval(), args, buffer, opset_version=OPSET, dynamo=False,
            input_names=[s.name for s in predictor.inputs],
            output_names=[s.name for s in predictor.outputs],
            dynamic_axes=_dynamic_axes([*predictor.inputs, *predictor.outputs]))
    data = buffer.getvalue()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


class OnnxRuntime:
    """Runs an exported graph with ONNX Runtime on the CPU."""

    name = "onnx"

    def __init__(self, model: bytes | Path, outputs: Sequence[TensorSpec], threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.output_names = [s.name for s in outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, inputs)
        return dict(zip(self.output_names, values, strict=True))


def check_parity(predictor: TensorPredictor[Any, Any], runtime: TensorRuntime,
                 atol: float = ATOL, rtol: float = RTOL) -> float:
    """The largest absolute difference between PyTorch's and `runtime`'s outputs on the
    predictor's examples; raises `ParityError` beyond `atol + rtol * |torch|`."""
    from aiforge.core.predictor import TorchRuntime

    inputs = predictor.example_inputs()
    reference = TorchRuntime(predictor.graph, predictor.inputs, predictor.outputs).run(inputs)
    other = runtime.run(inputs)
    worst = 0.0
    for spec in predictor.outputs:
        want, got = reference[spec.name], other[spec.name]
        if want.shape != got.shape:
            raise ParityError(f"{predictor.recipe}: output {spec.name!r} has shape {got.shape} "
                              f"under {runtime.name}, {want.shape} under torch")
        if want.dtype.kind in "fc":
            diff = np.abs(want.astype(np.float64) - got)
            worst = max(worst, float(diff.max(initial=0.0)))
            if not np.all(diff <= atol + rtol * np.abs(want)):
                raise ParityError(f"{predictor.recipe}: output {spec.name!r} differs by up to "
                                  f"{diff.max():.3g} under {runtime.name} (tolerance {atol:g} + "
                                  f"{rtol:g}·|value|)")
        elif not np.array_equal(want, got):
            raise ParityError(f"{predictor.recipe}: output {spec.name!r} differs under {runtime.name}")
    return worst


def onnx_runtime_for(predictor: TensorPredictor[Any, Any], threads: int = 1) -> OnnxRuntime:
    """Export, load into ONNX Runtime and check parity: a runtime the predictor can use."""
    runtime = OnnxRuntime(export_graph(predictor), predictor.outputs, threads)
    check_parity(predictor, runtime)
    return runtime

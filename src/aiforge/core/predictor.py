"""The predictor contract: how a trained model answers requests.

A recipe that can answer requests registers a predictor factory beside its model
(`Recipe(predictor=...)`, like `build_model`). The factory gets the run's model folder (its
files already checked against the SHA-256 sums recorded when the run saved them) and
returns a `Predictor`: a request schema, a response schema (pydantic) and one batched call

    predict(list[request]) -> list[response]

that holds the recipe's pre- and post-processing. `aiforge predict`, `aiforge serve`, the
studio and monitoring reach models only through this contract, so nothing outside a recipe's
own area branches on recipe names.

A model whose work between pre- and post-processing is one tensor graph subclasses
`TensorPredictor`: `preprocess` turns requests into named arrays, a `TensorRuntime` runs
the graph (PyTorch here; ONNX Runtime in `aiforge.mlops`), `postprocess` turns the arrays
into responses. A server swaps the runtime without the recipe knowing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

Datatype = Literal["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
"""Tensor datatypes as the Open Inference Protocol (v2) names them."""

_NUMPY_DATATYPES: dict[str, Datatype] = {
    "bool": "BOOL", "uint8": "UINT8", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "object": "BYTES",
}


def datatype_of(array: np.ndarray) -> Datatype:
    """The Open Inference Protocol name of a numpy array's dtype."""
    try:
        return _NUMPY_DATATYPES[array.dtype.name]
    except KeyError:
        raise TypeError(f"no inference-protocol datatype for numpy dtype {array.dtype}") from None


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a model, as the Open Inference Protocol's model
    metadata describes it: `shape` uses -1 for a dynamic axis (the batch axis first)."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class ApiModel(BaseModel):
    """Base of every request and response schema: strict types (`false` is not a number,
    "3" is not an int), finite floats only, no unknown fields. A request that breaks the
    schema is a 422 naming the field, before it reaches a model."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", frozen=True)


RequestT = TypeVar("RequestT", bound=BaseModel)
ResponseT = TypeVar("ResponseT", bound=BaseModel)


class Predictor(ABC, Generic[RequestT, ResponseT]):
    """A trained model that answers a batch of requests.

    Subclasses set `Request` and `Response` (pydantic models: the schema is the contract,
    and the server's OpenAPI page is generated from it; give them `examples`) and implement
    `predict`. `predict` must answer each request as if it came alone: batching changes
    speed, never answers (the tests of every predictor check it)."""

    Request: ClassVar[type[BaseModel]]
    Response: ClassVar[type[BaseModel]]
    streams: ClassVar[bool] = False
    """True when `stream` yields text as it is generated (causal language models)."""

    def __init__(self, recipe: str, meta: dict[str, Any]) -> None:
        self.recipe = recipe
        self.meta = meta
        """The model folder's saved record: recipe, config, and what the recipe added."""

    @abstractmethod
    def predict(self, requests: Sequence[RequestT]) -> list[ResponseT]:
        """One response per request, in order. Raise `InputError` for a request that is
        valid JSON but cannot be answered (an image that does not decode, a text longer
        than the model reads), naming the problem in one line."""

    def stream(self, request: RequestT) -> Iterator[str]:
        """The answer's text piece by piece as it is generated (only when `streams`)."""
        raise NotImplementedError(f"{self.recipe} does not stream")

    def features(self, requests: Sequence[RequestT]) -> np.ndarray | None:
        """What monitoring compares over time for these requests: one row of numbers per
        request (the model's input features, or an embedding such as its penultimate
        layer), or None when the predictor offers none."""
        return None

    @classmethod
    def examples(cls) -> list[BaseModel]:
        """Valid example requests (documentation, OpenAPI examples and tests)."""
        found = (cls.Request.model_config.get("json_schema_extra") or {})
        raw = found.get("examples", []) if isinstance(found, dict) else []
        return [cls.Request.model_validate(item) for item in raw]  # type: ignore[union-attr]


class TensorRuntime(Protocol):
    """Runs a predictor's tensor graph: named float/int arrays in, named arrays out."""

    name: str

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class TorchRuntime:
    """Runs the graph in PyTorch, without gradients, on the CPU (or `device`)."""

    name = "torch"

    def __init__(self, graph: torch.nn.Module, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], device: str = "cpu") -> None:
        self.graph = graph.to(device).eval()
        self.inputs, self.outputs, self.device = list(inputs), list(outputs), device

    @torch.inference_mode()
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[spec.name])).to(self.device)
                for spec in self.inputs]
        out = self.graph(*args)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {spec.name: t.detach().cpu().numpy() for spec, t in zip(self.outputs, out, strict=True)}


class TensorPredictor(Predictor[RequestT, ResponseT]):
    """A predictor whose model is one tensor graph between pre- and post-processing.

    `graph` is an `nn.Module` whose `forward` takes the tensors named by `inputs`, in that
    order, each with the batch as its first axis, and returns the tensors named by
    `outputs` (a tuple, or one tensor). It is what `aiforge export` writes as ONNX, so it
    must trace: no Python branching on tensor values."""

    inputs: ClassVar[tuple[TensorSpec, ...]]
    outputs: ClassVar[tuple[TensorSpec, ...]]

    def __init__(self, recipe: str, meta: dict[str, Any], graph: torch.nn.Module) -> None:
        super().__init__(recipe, meta)
        self.graph = graph.eval()
        self.runtime: TensorRuntime = TorchRuntime(self.graph, self.inputs, self.outputs)

    def use_runtime(self, runtime: TensorRuntime) -> None:
        """Run the graph elsewhere (ONNX Runtime); pre- and post-processing stay."""
        self.runtime = runtime

    @abstractmethod
    def preprocess(self, requests: Sequence[RequestT]) -> dict[str, np.ndarray]:
        """The graph's inputs for these requests, batch axis first."""

    @abstractmethod
    def postprocess(self, requests: Sequence[RequestT], outputs: dict[str, np.ndarray]) -> list[ResponseT]:
        """The responses from the graph's outputs."""

    def predict(self, requests: Sequence[RequestT]) -> list[ResponseT]:
        if not requests:
            return []
        return self.postprocess(requests, self.runtime.run(self.preprocess(requests)))

    def example_inputs(self) -> dict[str, np.ndarray]:
        """Graph inputs for the documented examples (export and runtime parity checks)."""
        examples = self.examples()
        if not examples:
            raise NotImplementedError(f"{type(self).__name__} documents no example request")
        return self.preprocess(examples)  # type: ignore[arg-type]


PredictorFactory = Callable[[Path, dict[str, Any]], Predictor[Any, Any]]
"""What a recipe registers as `predictor`: (verified model folder, its saved record) ->
a ready predictor."""

"""Trace specs: the leaf tensors and the graph, written as a program, a node list or a model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FloatDType = Literal["float32", "float64"]
DType = Literal["float32", "float64", "int64"]
Engine = Literal["torch", "reference", "numeric"]
Nested = float | list[Any]
"""A number or an arbitrarily nested list of numbers, as torch.tensor accepts."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    """A leaf tensor: a literal `value`, or a generated tensor of `shape` filled by `init`."""

    value: Nested | None = Field(None, description="A number or nested list, as torch.tensor takes it.")
    shape: list[Annotated[int, Field(ge=0)]] | None = Field(None, description="Shape of a generated tensor.")
    init: Literal["uniform", "normal", "zeros", "ones", "arange", "randint"] = "uniform"
    low: float = Field(0.0, description="Lower bound for uniform/randint (randint: inclusive).")
    high: float = Field(1.0, description="Upper bound for uniform/randint (exclusive).")
    mean: float = 0.0
    std: float = 1.0
    seed: int = Field(0, description="Seed of numpy's PCG64 generator for generated tensors.")
    dtype: DType | None = Field(None, description="Defaults to the spec's dtype (int64 for randint).")
    requires_grad: bool | None = Field(None, description="Defaults to true for float tensors.")

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if (self.value is None) == (self.shape is None):
            raise ValueError("give exactly one of 'value' or 'shape'")
        if self.requires_grad and self.dtype == "int64":
            raise ValueError("an int64 tensor cannot require grad")
        return self


class NodeSpec(_Strict):
    """One explicit graph node: `name = op(*inputs, **args)`; inputs are names or numbers."""

    name: str = Field(min_length=1, max_length=128)
    op: str
    inputs: list[str | float] = Field(default_factory=list)
    args: dict[str, Any] = Field(default_factory=dict)


IntPair = int | tuple[int, int]


class _Layer(_Strict):
    name: str | None = Field(None, description="Parameter prefix; defaults to the layer's index.")


class Conv2dLayer(_Layer):
    type: Literal["conv2d"]
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    kernel_size: IntPair
    stride: IntPair = 1
    padding: IntPair = 0
    dilation: IntPair = 1
    groups: int = Field(1, ge=1)
    bias: bool = True
    weights: dict[Literal["weight", "bias"], Nested] | None = Field(
        None, description="Explicit parameter values; missing ones are initialised from the model's seed."
    )


class LinearLayer(_Layer):
    type: Literal["linear"]
    in_features: int = Field(ge=1)
    out_features: int = Field(ge=1)
    bias: bool = True
    weights: dict[Literal["weight", "bias"], Nested] | None = None


class ActivationLayer(_Layer):
    type: Literal["relu", "sigmoid", "tanh", "gelu"]


class LeakyReluLayer(_Layer):
    type: Literal["leaky_relu"]
    negative_slope: float = 0.01


class Pool2dLayer(_Layer):
    type: Literal["max_pool2d", "avg_pool2d"]
    kernel_size: IntPair
    stride: IntPair | None = None
    padding: IntPair = 0


class FlattenLayer(_Layer):
    type: Literal["flatten"]
    start_dim: int = 1
    end_dim: int = -1


class DropoutLayer(_Layer):
    type: Literal["dropout"]
    p: float = 0.0

    @field_validator("p")
    @classmethod
    def _zero(cls, p: float) -> float:
        if p != 0.0:
            raise ValueError("only p=0 is supported: a trace must be deterministic")
        return p


Layer = Annotated[
    Conv2dLayer | LinearLayer | ActivationLayer | LeakyReluLayer | Pool2dLayer | FlattenLayer | DropoutLayer,
    Field(discriminator="type"),
]


class LossSpec(_Strict):
    """The scalar the model is differentiated through."""

    type: Literal["sum", "mean", "mse", "cross_entropy"]
    target: str | None = Field(None, description="Input name of the target (mse: same shape; cross_entropy: class indices).")
    reduction: Literal["mean", "sum"] = "mean"

    @model_validator(mode="after")
    def _target(self) -> LossSpec:
        if self.type in ("mse", "cross_entropy") and not self.target:
            raise ValueError(f"loss '{self.type}' needs a 'target'")
        return self


class ModelSpec(_Strict):
    """A layer list in the spirit of torch.nn.Sequential, applied to `input`, followed by `loss`."""

    input: str
    layers: list[Layer] = Field(min_length=1)
    loss: LossSpec
    seed: int = Field(0, description="Seed for parameters not given explicitly.")


class NumericOptions(_Strict):
    """Central finite differences in float64 for leaf gradients."""

    eps: float = Field(1e-6, gt=0)
    max_elements_per_leaf: int = Field(32, ge=1, description="Sample at most this many elements of each leaf.")
    seed: int = 0


class TraceSpec(_Strict):
    """What to trace: leaf tensors plus exactly one of `program`, `nodes` or `model`."""

    inputs: dict[str, InputSpec | Nested] = Field(default_factory=dict)
    program: str | None = Field(None, description="Python-syntax assignments, parsed against a whitelist.")
    nodes: list[NodeSpec] | None = None
    model: ModelSpec | None = None
    output: str | None = Field(None, description="Node to differentiate; defaults to the last one or .backward()'s.")
    grad_output: Nested | Literal["ones"] | None = Field(
        None,
        description="Gradient fed to the output, as tensor.backward(gradient): a number or nested list broadcast to "
        "the output's shape, or 'ones'. Required for a non-scalar output (torch's rule); a scalar's default is 1.",
    )
    dtype: FloatDType = "float32"
    engines: list[Engine] = Field(default_factory=lambda: ["torch", "reference"])
    device: Literal["cpu", "cuda"] = "cpu"
    numeric: NumericOptions = Field(default_factory=NumericOptions)
    keep: Literal["all"] | list[str] | None = Field(
        None, description="Tensors the service stores in full: 'all' or node/parameter names (default: all, within the byte cap)."
    )

    @model_validator(mode="after")
    def _one_form(self) -> TraceSpec:
        given = [k for k in ("program", "nodes", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'program', 'nodes' or 'model' (got {given or 'none'})")
        if not self.engines:
            raise ValueError("'engines' must name at least one engine")
        return self

    def input_specs(self) -> dict[str, InputSpec]:
        """Inputs with the number/list shorthand expanded."""
        return {k: v if isinstance(v, InputSpec) else InputSpec(value=v) for k, v in self.inputs.items()}

"""Trace specs: the leaf tensors and the graph, written as a program, a node list or a model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FloatDType = Literal["float32", "float64"]
DType = Literal["float32", "float64", "int64", "bool"]
Engine = Literal["torch", "reference", "numeric"]
Nested = float | list[Any]
"""A number or an arbitrarily nested list of numbers, as torch.tensor accepts."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class InputSpec(_Strict):
    """A leaf tensor: a literal `value`, or a generated tensor of `shape` filled by `init`."""

    value: Nested | None = Field(
        None, description="A number or nested list, as torch.tensor takes it; 'Infinity', '-Infinity' and 'NaN' allowed."
    )
    shape: list[Annotated[int, Field(ge=0)]] | None = Field(None, description="Shape of a generated tensor.")
    init: Literal["uniform", "normal", "zeros", "ones", "arange", "randint"] = "uniform"
    low: float = Field(0.0, description="Lower bound for uniform/randint (randint: inclusive).")
    high: float = Field(1.0, description="Upper bound for uniform/randint (exclusive).")
    mean: float = 0.0
    std: float = 1.0
    seed: int = Field(0, description="Seed of the generator for generated tensors.")
    rng: Literal["numpy", "torch"] = Field(
        "numpy",
        description="numpy: PCG64(seed). torch: torch's CPU generator after torch.manual_seed(seed), drawn like "
        "torch.rand / torch.randn / torch.randint / uniform_ / normal_, so the numbers equal torch's.",
    )
    dtype: DType | None = Field(None, description="Defaults to the spec's dtype (int64 for randint).")
    requires_grad: bool | None = Field(None, description="Defaults to true for float tensors.")

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if (self.value is None) == (self.shape is None):
            raise ValueError("give exactly one of 'value' or 'shape'")
        if self.requires_grad and self.dtype in ("int64", "bool"):
            raise ValueError(f"a {self.dtype} tensor cannot require grad")
        return self


NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Names of nodes, inputs and layers: any text but control characters (a NUL could not travel in a URL)."""


class NodeSpec(_Strict):
    """One explicit graph node: `name = op(*inputs, **args)`; inputs are names or numbers."""

    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    op: str
    inputs: list[str | float] = Field(default_factory=list)
    args: dict[str, Any] = Field(default_factory=dict)


IntPair = int | tuple[int, int]
IntOne = int | tuple[int]
Weights = dict[str, Nested] | None


class _Layer(_Strict):
    """Fields after `type` are torch.nn's constructor arguments, in torch's order and with its defaults."""

    name: str | None = Field(
        None, max_length=128, pattern=NAME_PATTERN, description="Parameter prefix and output name; defaults to the layer's index."
    )
    inputs: list[str] | None = Field(
        None, description="Earlier layers (by name or index) or model inputs this layer takes; default: the previous layer."
    )


class Conv2dLayer(_Layer):
    """nn.Conv2d."""

    type: Literal["conv2d"]
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    kernel_size: IntPair
    stride: IntPair = 1
    padding: IntPair | Literal["same", "valid"] = 0
    dilation: IntPair = 1
    groups: int = Field(1, ge=1)
    bias: bool = True
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = Field(
        "zeros", description="Other than 'zeros': F.pad in that mode, then the convolution without padding, as torch.")
    weights: Weights = Field(None, description="Explicit parameter values by name ('weight', 'bias').")


class Conv1dLayer(Conv2dLayer):
    """nn.Conv1d (text and audio CNNs): sizes are ints (or 1-tuples)."""

    type: Literal["conv1d"]  # type: ignore[assignment]
    kernel_size: IntOne  # type: ignore[assignment]
    stride: IntOne = 1  # type: ignore[assignment]
    padding: IntOne | Literal["same", "valid"] = 0  # type: ignore[assignment]
    dilation: IntOne = 1  # type: ignore[assignment]


class ConvTranspose2dLayer(_Layer):
    """nn.ConvTranspose2d (fields in torch's constructor order)."""

    type: Literal["conv_transpose2d"]
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    kernel_size: IntPair
    stride: IntPair = 1
    padding: IntPair = 0
    output_padding: IntPair = 0
    groups: int = Field(1, ge=1)
    bias: bool = True
    dilation: IntPair = 1
    padding_mode: Literal["zeros"] = "zeros"
    weights: Weights = Field(None, description="Explicit parameter values by name ('weight', 'bias').")


class ConvTranspose1dLayer(ConvTranspose2dLayer):
    """nn.ConvTranspose1d: sizes are ints (or 1-tuples)."""

    type: Literal["conv_transpose1d"]  # type: ignore[assignment]
    kernel_size: IntOne  # type: ignore[assignment]
    stride: IntOne = 1  # type: ignore[assignment]
    padding: IntOne = 0  # type: ignore[assignment]
    output_padding: IntOne = 0  # type: ignore[assignment]
    dilation: IntOne = 1  # type: ignore[assignment]


class LinearLayer(_Layer):
    """nn.Linear."""

    type: Literal["linear"]
    in_features: int = Field(ge=1)
    out_features: int = Field(ge=1)
    bias: bool = True
    weights: Weights = None


class ActivationLayer(_Layer):
    """nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.Identity, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.SELU,
    nn.LogSigmoid, nn.Softsign."""

    type: Literal["relu", "relu6", "sigmoid", "tanh", "silu", "identity", "hardswish", "hardsigmoid", "mish", "selu",
                  "logsigmoid", "softsign"]
    inplace: bool = Field(False, description="Accepted for torch compatibility; a model spec's layers never work in "
                                             "place (a program's nn.ReLU(inplace=True) changes its input, as torch).")


class GeluLayer(_Layer):
    """nn.GELU."""

    type: Literal["gelu"]
    approximate: Literal["none", "tanh"] = "none"


class LeakyReluLayer(_Layer):
    """nn.LeakyReLU."""

    type: Literal["leaky_relu"]
    negative_slope: float = 0.01
    inplace: bool = False


class PReLULayer(_Layer):
    """nn.PReLU: a learned negative slope, one for all channels or one per channel (dim 1)."""

    type: Literal["prelu"]
    num_parameters: int = Field(1, ge=1)
    init: float = 0.25
    weights: Weights = None


class EluLayer(_Layer):
    """nn.ELU."""

    type: Literal["elu"]
    alpha: float = 1.0
    inplace: bool = False


class HardtanhLayer(_Layer):
    """nn.Hardtanh."""

    type: Literal["hardtanh"]
    min_val: float = -1.0
    max_val: float = 1.0
    inplace: bool = False


class SoftplusLayer(_Layer):
    """nn.Softplus."""

    type: Literal["softplus"]
    beta: float = 1.0
    threshold: float = 20.0


class CeluLayer(_Layer):
    """nn.CELU."""

    type: Literal["celu"]
    alpha: float = 1.0
    inplace: bool = False


class ShrinkLayer(_Layer):
    """nn.Hardshrink, nn.Softshrink."""

    type: Literal["hardshrink", "softshrink"]
    lambd: float = Field(0.5, ge=0)


class ThresholdLayer(_Layer):
    """nn.Threshold."""

    type: Literal["threshold"]
    threshold: float
    value: float
    inplace: bool = False


class SoftmaxLayer(_Layer):
    """nn.Softmax, nn.LogSoftmax."""

    type: Literal["softmax", "log_softmax"]
    dim: int | None = None
    """None (`nn.Softmax()`): torch's implicit choice, 0 for an input of 0, 1 or 3 dims, else 1 (deprecated)."""


class GluLayer(_Layer):
    """nn.GLU: the input halved along dim into a and b, a * sigmoid(b)."""

    type: Literal["glu"]
    dim: int = -1


class Pool2dLayer(_Layer):
    """nn.AvgPool2d (zero padding counted, torch's default; count_include_pad=False divides by the input elements a
    window covers)."""

    type: Literal["avg_pool2d"]
    kernel_size: IntPair
    stride: IntPair | None = None
    padding: IntPair = 0
    ceil_mode: bool = False
    count_include_pad: bool = True


class MaxPool2dLayer(_Layer):
    """nn.MaxPool2d, in torch's constructor order (dilation 1 only; ceil_mode as torchvision's GoogLeNet uses it)."""

    type: Literal["max_pool2d"]
    kernel_size: IntPair
    stride: IntPair | None = None
    padding: IntPair = 0
    dilation: Literal[1] = 1
    return_indices: Literal[False] = Field(False, description="Not supported (the indices are not traced).")
    ceil_mode: bool = False


class Pool1dLayer(_Layer):
    """nn.MaxPool1d, nn.AvgPool1d (text CNNs; ceil_mode as N-HiTS pools, count_include_pad for the average)."""

    type: Literal["max_pool1d", "avg_pool1d"]
    kernel_size: IntOne
    stride: IntOne | None = None
    padding: IntOne = 0
    ceil_mode: bool = False
    count_include_pad: bool = True


class AdaptivePool1dLayer(_Layer):
    """nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d."""

    type: Literal["adaptive_avg_pool1d", "adaptive_max_pool1d"]
    output_size: IntOne


class AdaptivePoolLayer(_Layer):
    """nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d."""

    type: Literal["adaptive_avg_pool2d", "adaptive_max_pool2d"]
    output_size: int | tuple[int | None, int | None]


class FlattenLayer(_Layer):
    """nn.Flatten."""

    type: Literal["flatten"]
    start_dim: int = 1
    end_dim: int = -1


class UpsampleLayer(_Layer):
    """nn.Upsample (F.interpolate), nn.UpsamplingNearest2d and nn.UpsamplingBilinear2d (align_corners=True)."""

    type: Literal["upsample", "upsampling_nearest2d", "upsampling_bilinear2d"]
    size: int | list[int] | None = None
    scale_factor: float | list[float] | None = None
    mode: Literal["nearest", "nearest-exact", "linear", "bilinear", "trilinear"] = "nearest"
    align_corners: bool | None = None
    recompute_scale_factor: bool | None = None


class PixelShuffleLayer(_Layer):
    """nn.PixelShuffle (sub-pixel convolution)."""

    type: Literal["pixel_shuffle"]
    upscale_factor: int = Field(ge=1)


class UnflattenLayer(_Layer):
    """nn.Unflatten: one dim into several (a decoder's `nn.Unflatten(1, (64, 7, 7))`)."""

    type: Literal["unflatten"]
    dim: int
    unflattened_size: list[int]


class PadLayer(_Layer):
    """nn.ZeroPad1d/2d/3d, nn.ConstantPad1d/2d/3d: `padding` an int (every side) or (left, right[, top, bottom[,
    front, back]])."""

    type: Literal["zero_pad1d", "zero_pad2d", "zero_pad3d", "constant_pad1d", "constant_pad2d", "constant_pad3d"]
    padding: int | list[int]
    value: float = 0.0


class EdgePadLayer(_Layer):
    """nn.ReflectionPad1d/2d/3d, nn.ReplicationPad1d/2d/3d, nn.CircularPad1d/2d/3d: F.pad in reflect, replicate or
    circular mode; `padding` as PadLayer's."""

    type: Literal["reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d", "replication_pad2d",
                  "replication_pad3d", "circular_pad1d", "circular_pad2d", "circular_pad3d"]
    padding: int | list[int]


class DropoutLayer(_Layer):
    """nn.Dropout (training mode): the mask is drawn from torch's generator in program order."""

    type: Literal["dropout"]
    p: float = Field(0.5, ge=0.0, le=1.0)
    inplace: bool = False


class ChannelDropoutLayer(_Layer):
    """nn.Dropout1d / Dropout2d / Dropout3d (training mode): whole channels zeroed, one draw per (sample, channel) from
    torch's generator in program order (a mask of shape (N, C, 1, ...), as torch's feature dropout draws it)."""

    type: Literal["dropout1d", "dropout2d", "dropout3d"]
    p: float = Field(0.5, ge=0.0, le=1.0)
    inplace: bool = False


class BatchNormLayer(_Layer):
    """nn.BatchNorm1d / nn.BatchNorm2d in training mode (batch statistics); the running stats after this step
    are reported as the nodes '<name>.running_mean' and '<name>.running_var'."""

    type: Literal["batch_norm1d", "batch_norm2d"]
    num_features: int = Field(ge=1)
    eps: float = Field(1e-5, gt=0)
    momentum: float | None = Field(0.1, ge=0.0, le=1.0, description="None: the cumulative average (1/k at call k)")
    affine: bool = True
    track_running_stats: bool = True
    weights: Weights = None


class LayerNormLayer(_Layer):
    """nn.LayerNorm."""

    type: Literal["layer_norm"]
    normalized_shape: int | list[int]
    eps: float = Field(1e-5, gt=0)
    elementwise_affine: bool = True
    bias: bool = True
    weights: Weights = None


class RMSNormLayer(_Layer):
    """nn.RMSNorm: x * rsqrt(mean(x**2) + eps) over normalized_shape, times weight (eps None: the dtype's epsilon)."""

    type: Literal["rms_norm"]
    normalized_shape: int | list[int]
    eps: float | None = Field(None, gt=0)
    elementwise_affine: bool = True
    weights: Weights = None


class InstanceNormLayer(_Layer):
    """nn.InstanceNorm1d/2d/3d with input statistics (track_running_stats=False, torch's default)."""

    type: Literal["instance_norm1d", "instance_norm2d", "instance_norm3d"]
    num_features: int = Field(ge=1)
    eps: float = Field(1e-5, gt=0)
    momentum: float = Field(0.1, ge=0.0, le=1.0)
    affine: bool = False
    track_running_stats: Literal[False] = Field(False, description="running statistics are not traced")
    weights: Weights = None


class GroupNormLayer(_Layer):
    """nn.GroupNorm."""

    type: Literal["group_norm"]
    num_groups: int = Field(ge=1)
    num_channels: int = Field(ge=1)
    eps: float = Field(1e-5, gt=0)
    affine: bool = True
    weights: Weights = None


class EmbeddingLayer(_Layer):
    """nn.Embedding: int64 indices in, vectors out."""

    type: Literal["embedding"]
    num_embeddings: int = Field(ge=1)
    embedding_dim: int = Field(ge=1)
    padding_idx: int | None = None
    max_norm: None = Field(None, description="Only None: torch's renormalisation changes the weight in place in forward.")
    scale_grad_by_freq: Literal[False] = False
    sparse: bool = Field(False, description="True: torch's weight.grad is a sparse tensor of the same numbers, shown dense.")
    weights: Weights = None


class EmbeddingBagLayer(_Layer):
    """nn.EmbeddingBag: int64 indices in (a 2-D input's rows are the bags; a 1-D one with offsets), one summed,
    averaged or maxed vector per bag out."""

    type: Literal["embedding_bag"]
    num_embeddings: int = Field(ge=1)
    embedding_dim: int = Field(ge=1)
    max_norm: None = Field(None, description="Only None: torch's renormalisation changes the weight in place in forward.")
    norm_type: float = 2.0
    scale_grad_by_freq: Literal[False] = False
    mode: Literal["sum", "mean", "max"] = "mean"
    sparse: Literal[False] = Field(False, description="Only False: a sparse gradient is the same numbers, kept otherwise.")
    include_last_offset: bool = False
    padding_idx: int | None = None
    weights: Weights = None


class SelfAttentionLayer(_Layer):
    """Multi-head self-attention as nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first=True)(x, x, x,
    need_weights=False) computes it: in_proj (linear), split into heads, scaled_dot_product_attention (with dropout in
    training: its math, the weights' dropout mask drawn from torch's generator), out_proj (linear).
    Parameters are named like its state_dict: in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias."""

    type: Literal["self_attention"]
    embed_dim: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the attention weights (training mode).")
    bias: bool = True
    add_bias_kv: Literal[False] = Field(False, description="Not supported (bias_k / bias_v).")
    add_zero_attn: Literal[False] = Field(False, description="Not supported.")
    kdim: int | None = Field(None, description="Only None or embed_dim: keys of the query's size.")
    vdim: int | None = Field(None, description="Only None or embed_dim: values of the query's size.")
    batch_first: bool = Field(True, description="3-d inputs are (N, L, E); false: (L, N, E), nn.MultiheadAttention's "
                                                "own default (a program's nn.MultiheadAttention(...) without it).")
    causal: bool = Field(False, description="Causal masking (each position attends to itself and earlier ones).")
    weights: Weights = None

    @model_validator(mode="after")
    def _same_dims(self) -> SelfAttentionLayer:
        for name in ("kdim", "vdim"):
            if getattr(self, name) not in (None, self.embed_dim):
                raise ValueError(f"{name}={getattr(self, name)}: keys and values of another size than embed_dim "
                                 f"({self.embed_dim}) are not supported")
        return self


class TransformerBlockLayer(_Layer):
    """nn.TransformerEncoderLayer: self-attention and a feed-forward block, each with dropout, a residual connection and
    a LayerNorm (after it, or before with norm_first), as torch's own Python forward computes it in training. Parameters as
    its state_dict: self_attn.in_proj_weight, ..., linear1.weight, linear2.weight, norm1.weight, norm2.weight."""

    type: Literal["transformer_encoder_layer"]
    d_model: int = Field(ge=1)
    nhead: int = Field(ge=1)
    dim_feedforward: int = Field(2048, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu"] = "relu"
    layer_norm_eps: float = Field(1e-5, gt=0)
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    causal: bool = Field(False, description="Model specs: a causal mask (a program passes src_mask / is_causal).")
    weights: Weights = None


class TransformerDecoderBlockLayer(TransformerBlockLayer):
    """nn.TransformerDecoderLayer: self-attention over the target, attention to the memory (the encoder's output, its
    second input), a feed-forward block, each with dropout, a residual connection and a LayerNorm (norm1-3). Parameters
    as its state_dict: self_attn.*, multihead_attn.*, linear1.*, linear2.*, norm1-3.*; `causal` masks the target."""

    type: Literal["transformer_decoder_layer"]  # type: ignore[assignment]


class TransformerDecoderStackLayer(TransformerBlockLayer):
    """nn.TransformerDecoder(nn.TransformerDecoderLayer(...), num_layers): copies of one layer (layers.0.*, ...), each
    given the target and the memory (its two inputs)."""

    type: Literal["transformer_decoder"]  # type: ignore[assignment]
    num_layers: int = Field(1, ge=1, le=64)


class TransformerLayer(_Layer):
    """nn.Transformer: an encoder of num_encoder_layers layers and a LayerNorm over the source (its first input), a
    decoder of num_decoder_layers layers and a LayerNorm over the target (its second input) attending to the encoder's
    output; parameters as its state_dict (encoder.layers.0.self_attn.in_proj_weight, ..., decoder.norm.bias), matrices
    re-drawn with xavier_uniform_ as torch's constructor does. `causal` masks the target."""

    type: Literal["transformer"]
    d_model: int = Field(512, ge=1)
    nhead: int = Field(8, ge=1)
    num_encoder_layers: int = Field(6, ge=1, le=64)
    num_decoder_layers: int = Field(6, ge=1, le=64)
    dim_feedforward: int = Field(2048, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu"] = "relu"
    custom_encoder: None = Field(None, description="Not supported (only None).")
    custom_decoder: None = Field(None, description="Not supported (only None).")
    layer_norm_eps: float = Field(1e-5, gt=0)
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    causal: bool = Field(False, description="Model specs: a causal mask over the target.")
    weights: Weights = None


class TransformerEncoderStackLayer(TransformerBlockLayer):
    """nn.TransformerEncoder(nn.TransformerEncoderLayer(...), num_layers): num_layers copies of one layer (torch
    deep-copies it, so every layer starts with the same parameters), named layers.0.self_attn.in_proj_weight, ..."""

    type: Literal["transformer_encoder"]  # type: ignore[assignment]
    num_layers: int = Field(1, ge=1, le=64)
    enable_nested_tensor: bool = Field(True, description="torch's fast path in eval mode without gradients (not traced).")
    mask_check: bool = True


class RNNLayer(_Layer):
    """nn.RNN, unrolled over time: h_t = tanh(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh) (or relu) per step and
    layer. Parameters as its state_dict: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 (`_reverse`: the
    backward direction). A model spec's layer outputs the sequence's outputs (a program gets (output, h_n))."""

    type: Literal["rnn"]
    input_size: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_layers: int = Field(1, ge=1, le=8)
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    bias: bool = True
    batch_first: bool = False
    dropout: float = Field(0.0, ge=0, le=1)
    bidirectional: bool = False
    weights: Weights = None


class GatedRNNLayer(_Layer):
    """nn.LSTM (gates i, f, g, o; cell state c) or nn.GRU (gates r, z, n), unrolled over time, with torch's
    equations and parameter names (weight_ih_l0 holds the gates' rows in torch's order). A program gets
    (output, (h_n, c_n)) from an LSTM, (output, h_n) from a GRU."""

    type: Literal["lstm", "gru"]
    input_size: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_layers: int = Field(1, ge=1, le=8)
    bias: bool = True
    batch_first: bool = False
    dropout: float = Field(0.0, ge=0, le=1)
    bidirectional: bool = False
    weights: Weights = None


class RNNCellLayer(_Layer):
    """nn.RNNCell: one step, h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu); h starts at zeros in a model spec."""

    type: Literal["rnn_cell"]
    input_size: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    bias: bool = True
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    weights: Weights = None


class GatedCellLayer(_Layer):
    """nn.LSTMCell / nn.GRUCell: one step of the gated layers' equations (a program gets (h', c') from an LSTMCell,
    h' from a GRUCell); parameters weight_ih, weight_hh, bias_ih, bias_hh as torch names them."""

    type: Literal["lstm_cell", "gru_cell"]
    input_size: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    bias: bool = True
    weights: Weights = None


class AddLayer(_Layer):
    """The sum of its inputs (a residual connection): give two or more in `inputs`."""

    type: Literal["add"]


class CatLayer(_Layer):
    """torch.cat of its inputs along `dim`."""

    type: Literal["cat"]
    dim: int = 0


Layer = Annotated[
    Conv2dLayer | Conv1dLayer | ConvTranspose2dLayer | ConvTranspose1dLayer | LinearLayer | ActivationLayer | GeluLayer | LeakyReluLayer | PReLULayer | EluLayer | HardtanhLayer | SoftplusLayer | CeluLayer | ShrinkLayer | ThresholdLayer | SoftmaxLayer | GluLayer
    | Pool2dLayer | MaxPool2dLayer | AdaptivePoolLayer | Pool1dLayer | AdaptivePool1dLayer | FlattenLayer | UnflattenLayer | UpsampleLayer | PixelShuffleLayer | PadLayer | EdgePadLayer | DropoutLayer | ChannelDropoutLayer | BatchNormLayer | LayerNormLayer | RMSNormLayer | GroupNormLayer | InstanceNormLayer | EmbeddingLayer | EmbeddingBagLayer
    | SelfAttentionLayer | TransformerBlockLayer | TransformerEncoderStackLayer | TransformerDecoderBlockLayer
    | TransformerDecoderStackLayer | TransformerLayer | RNNLayer | GatedRNNLayer | RNNCellLayer | GatedCellLayer | AddLayer | CatLayer,
    Field(discriminator="type"),
]


class LossSpec(_Strict):
    """The scalar the model is differentiated through."""

    type: Literal["sum", "mean", "mse", "cross_entropy"]
    target: str | None = Field(None, description="Input name of the target (mse: same shape; cross_entropy: class indices).")
    reduction: Literal["mean", "sum"] = "mean"
    input: str | None = Field(None, description="The layer the loss reads (default: the last one).")

    @model_validator(mode="after")
    def _target(self) -> LossSpec:
        if self.type in ("mse", "cross_entropy") and not self.target:
            raise ValueError(f"loss '{self.type}' needs a 'target'")
        return self


class ModelSpec(_Strict):
    """Layers applied to `input` (a chain, or a DAG through each layer's `inputs`), followed by `loss`."""

    input: str
    layers: list[Layer] = Field(min_length=1)
    loss: LossSpec
    seed: int = Field(
        0, description="torch.manual_seed before the layers are built: parameters not given are torch's default init."
    )


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
    dtype: FloatDType = Field("float32", description="The default dtype (torch.set_default_dtype): of inputs, modules and literals.")
    seed: int | None = Field(
        None,
        description="torch.manual_seed for torch's generator (program tensors, module init, dropout masks) until the "
        "program calls torch.manual_seed itself. Default: 67280421310721, a fresh torch.Generator's seed.",
    )
    engines: list[Engine] = Field(default_factory=lambda: ["torch", "reference"])
    device: Literal["cpu", "cuda"] = "cpu"
    numeric: NumericOptions = Field(default_factory=NumericOptions)
    keep: Literal["all"] | list[str] | None = Field(
        None, description="Tensors the service stores in full: 'all' or node/parameter names (default: all, within the byte cap)."
    )

    model_config = ConfigDict(
        extra="forbid",
        ser_json_inf_nan="strings",
        json_schema_extra={"oneOf": [  # exactly one of the three forms (given and not null)
            {"required": ["program"], "properties": {"program": {"type": "string"}}},
            {"required": ["nodes"], "properties": {"nodes": {"type": "array"}}},
            {"required": ["model"], "properties": {"model": {"type": "object"}}},
        ]},
    )

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if not k or len(k) > 128 or any(ord(c) < 32 or ord(c) == 127 for c in k)]
        if bad:
            raise ValueError(f"input names must be 1 to 128 characters without control characters: {bad[:3]!r}")
        return v

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

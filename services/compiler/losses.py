"""torch.nn loss modules (`nn.MSELoss()`, `nn.CrossEntropyLoss(weight=w)`, `nn.TripletMarginLoss(margin=1.0)`): each
a LayerDef whose call adds the loss op, or the ops torch composes it of (services.compiler.composites)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from services.compiler import composites
from services.compiler.layers import Call, Emit, Emitter, LayerDef, _adder, layer
from services.errors import ShapeError


class MSELossArgs(BaseModel):
    """nn.MSELoss."""

    model_config = ConfigDict(extra="forbid")
    reduction: str = "mean"


class NLLLossArgs(BaseModel):
    """nn.NLLLoss (class-index targets), in torch's constructor order; `weight`: the class weights' tensor (its name)."""

    model_config = ConfigDict(extra="forbid")
    weight: str | None = None
    size_average: None = None
    ignore_index: int = -100
    reduce: None = None
    reduction: str = "mean"


class CrossEntropyLossArgs(NLLLossArgs):
    """nn.CrossEntropyLoss (class-index targets)."""

    label_smoothing: float = 0.0


class BCELossArgs(BaseModel):
    """nn.BCELoss, in torch's constructor order; `weight`: the elements' weights' tensor (its name)."""

    model_config = ConfigDict(extra="forbid")
    weight: str | None = None
    size_average: None = None
    reduce: None = None
    reduction: str = "mean"


class BCEWithLogitsLossArgs(BCELossArgs):
    """nn.BCEWithLogitsLoss; `pos_weight`: the positive examples' weights' tensor (its name)."""

    pos_weight: str | None = None


TENSOR_ARGS = {"weight", "pos_weight"}
"""Loss constructor arguments that are tensors (nn.CrossEntropyLoss(weight=w)): they hold the tensor's name."""


def _loss(op: str) -> Emit:
    """`op(input, target[, weight[, pos_weight]], **the other constructor arguments)` (a weight left out before a
    pos_weight: 1.0); nn.CrossEntropyLoss of a float target takes it as class probabilities (cross_entropy_probs)."""
    def emit(e: Emitter, c: Call) -> str:
        args = c.cfg.model_dump(exclude=TENSOR_ARGS | {"size_average", "reduce"})
        name = op
        if op == "cross_entropy" and e.builder.dtypes.get(c.inputs[1], "int64").startswith("float"):
            name = "cross_entropy_probs"
            if args.pop("ignore_index") != -100:
                raise e.error("nn.CrossEntropyLoss: ignore_index is only applicable when the target contains class indices")
        weights: list[Any] = [getattr(c.cfg, k, None) for k in ("weight", "pos_weight")]
        while weights and weights[-1] is None:
            weights.pop()
        return e.node(c.out, name, [*c.inputs, *[1.0 if w is None else w for w in weights]], args)
    return emit


for _op, _cls, _args in (("mse_loss", "MSELoss", MSELossArgs), ("binary_cross_entropy", "BCELoss", BCELossArgs),
                         ("binary_cross_entropy_with_logits", "BCEWithLogitsLoss", BCEWithLogitsLossArgs),
                         ("nll_loss", "NLLLoss", NLLLossArgs), ("cross_entropy", "CrossEntropyLoss", CrossEntropyLossArgs)):
    # each constructor argument is the op's argument of the same name
    layer(LayerDef(_op, _cls, _args, _loss(_op), min_inputs=2, max_inputs=2))


class SmoothL1LossArgs(MSELossArgs):
    """nn.SmoothL1Loss."""

    beta: float = 1.0


class HuberLossArgs(MSELossArgs):
    """nn.HuberLoss."""

    delta: float = 1.0


class KLDivLossArgs(MSELossArgs):
    """nn.KLDivLoss (log-probabilities in, probabilities or log_target as targets)."""

    log_target: bool = False


class CosineSimilarityArgs(BaseModel):
    """nn.CosineSimilarity."""

    model_config = ConfigDict(extra="forbid")
    dim: int = 1
    eps: float = 1e-8


for _op, _cls, _args in (("smooth_l1_loss", "SmoothL1Loss", SmoothL1LossArgs), ("huber_loss", "HuberLoss", HuberLossArgs)):
    layer(LayerDef(_op, _cls, _args, lambda e, c, op=_op: e.node(c.out, op, c.inputs, c.cfg.model_dump()),
                   min_inputs=2, max_inputs=2))


class PairwiseDistanceArgs(BaseModel):
    """nn.PairwiseDistance."""

    model_config = ConfigDict(extra="forbid")
    p: float = 2.0
    eps: float = 1e-6
    keepdim: bool = False


class TripletMarginLossArgs(MSELossArgs):
    """nn.TripletMarginLoss, in torch's constructor order."""

    margin: float = 1.0
    p: float = 2.0
    eps: float = 1e-6
    swap: bool = False
    size_average: None = None
    reduce: None = None


class MarginRankingLossArgs(MSELossArgs):
    """nn.MarginRankingLoss, in torch's constructor order."""

    margin: float = 0.0
    size_average: None = None
    reduce: None = None


class HingeEmbeddingLossArgs(MarginRankingLossArgs):
    """nn.HingeEmbeddingLoss, in torch's constructor order."""

    margin: float = 1.0


class CosineEmbeddingLossArgs(MarginRankingLossArgs):
    """nn.CosineEmbeddingLoss, in torch's constructor order."""


class PoissonNLLLossArgs(BaseModel):
    """nn.PoissonNLLLoss, in torch's constructor order."""

    model_config = ConfigDict(extra="forbid")
    log_input: bool = True
    full: bool = False
    size_average: None = None
    eps: float = 1e-8
    reduce: None = None
    reduction: str = "mean"


class GaussianNLLLossArgs(BaseModel):
    """nn.GaussianNLLLoss(*, full=False, eps=1e-06, reduction='mean'), called with (input, target, var)."""

    model_config = ConfigDict(extra="forbid")
    full: bool = False
    eps: float = 1e-6
    reduction: str = "mean"


class MultiLabelSoftMarginLossArgs(BCELossArgs):
    """nn.MultiLabelSoftMarginLoss (weight: the classes' weights' tensor, its name)."""


def _composite_loss(e: Emitter, call: Call) -> str:
    a, b = call.inputs[:2]
    c = call.cfg
    ndim = max(len(e.shape(x)) for x in call.inputs)
    try:
        if isinstance(c, PairwiseDistanceArgs):
            return composites.pairwise_distance(_adder(e, call), a, b, ndim, c.p, c.eps, c.keepdim)
        if isinstance(c, TripletMarginLossArgs):
            return composites.triplet_margin_loss(_adder(e, call), a, b, call.inputs[2], ndim, c.margin, c.p, c.eps,
                                                  c.swap, c.reduction)
        if isinstance(c, CosineEmbeddingLossArgs):
            return composites.cosine_embedding_loss(_adder(e, call), a, b, call.inputs[2],
                                                    tuple(e.shape(x) for x in call.inputs), c.margin, c.reduction)
        if isinstance(c, HingeEmbeddingLossArgs):
            return composites.hinge_embedding_loss(_adder(e, call), a, b, c.margin, c.reduction)
        if isinstance(c, MarginRankingLossArgs):
            return composites.margin_ranking_loss(_adder(e, call), a, b, call.inputs[2], c.margin, c.reduction)
        if isinstance(c, KLDivLossArgs):
            shape = e.shape(a)
            return composites.kl_div(_adder(e, call), a, b, shape[0] if shape else 1, c.reduction, c.log_target)
        if isinstance(c, GaussianNLLLossArgs):
            return composites.gaussian_nll_loss(_adder(e, call), a, b, call.inputs[2], tuple(e.shape(x) for x in call.inputs),
                                                c.full, c.eps, c.reduction)
        if isinstance(c, PoissonNLLLossArgs):
            return composites.poisson_nll_loss(_adder(e, call), a, b, c.log_input, c.full, c.eps, c.reduction)
        if isinstance(c, MultiLabelSoftMarginLossArgs):
            shape = e.shape(a)
            return composites.multilabel_soft_margin_loss(_adder(e, call), a, b, shape[-1] if shape else 1, c.weight,
                                                          c.reduction)
        if isinstance(c, CosineSimilarityArgs):
            return composites.cosine_similarity(_adder(e, call), a, b, (e.shape(a), e.shape(b)), c.dim, c.eps)
        return composites.l1_loss(_adder(e, call), a, b, c.reduction)
    except (ValueError, ShapeError) as err:
        raise e.error(str(err)) from None


layer(LayerDef("soft_margin_loss", "SoftMarginLoss", MSELossArgs, _loss("soft_margin_loss"), min_inputs=2, max_inputs=2))
for _type, _cls, _args in (("poisson_nll_loss", "PoissonNLLLoss", PoissonNLLLossArgs),
                           ("multilabel_soft_margin_loss", "MultiLabelSoftMarginLoss", MultiLabelSoftMarginLossArgs),
                           ("hinge_embedding_loss", "HingeEmbeddingLoss", HingeEmbeddingLossArgs)):
    layer(LayerDef(_type, _cls, _args, _composite_loss, min_inputs=2, max_inputs=2))
for _type, _cls, _args in (("l1_loss", "L1Loss", MSELossArgs), ("kl_div", "KLDivLoss", KLDivLossArgs),
                           ("cosine_similarity", "CosineSimilarity", CosineSimilarityArgs),
                           ("pairwise_distance", "PairwiseDistance", PairwiseDistanceArgs)):
    layer(LayerDef(_type, _cls, _args, _composite_loss, min_inputs=2, max_inputs=2))
for _type, _cls, _args in (("triplet_margin_loss", "TripletMarginLoss", TripletMarginLossArgs),
                           ("margin_ranking_loss", "MarginRankingLoss", MarginRankingLossArgs),
                           ("cosine_embedding_loss", "CosineEmbeddingLoss", CosineEmbeddingLossArgs),
                           ("gaussian_nll_loss", "GaussianNLLLoss", GaussianNLLLossArgs)):
    layer(LayerDef(_type, _cls, _args, _composite_loss, min_inputs=3, max_inputs=3))

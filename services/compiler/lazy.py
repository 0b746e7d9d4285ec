"""torch.nn's lazy modules (nn.LazyLinear(10), nn.LazyConv2d(6, 5): d2l's way of writing models): each is the layer
it becomes at its first call, which reads the missing size off its input and draws the parameters then."""

from __future__ import annotations

from services.compiler.layers import BY_MODULE, SUBCLASS_OF, Shape

LAZY_SIZE = {"Linear": "in_features", "Conv1d": "in_channels", "Conv2d": "in_channels", "ConvTranspose1d": "in_channels",
             "ConvTranspose2d": "in_channels", "BatchNorm1d": "num_features", "BatchNorm2d": "num_features"}
"""torch.nn's lazy modules (nn.LazyLinear(10), d2l's way of writing models) by the module each becomes at its first
call, and the constructor argument that call reads off its input: torch draws the parameters then, not before."""
for _base in LAZY_SIZE:
    BY_MODULE[f"Lazy{_base}"] = BY_MODULE[_base]
    SUBCLASS_OF[f"Lazy{_base}"] = _base  # isinstance(m, nn.Linear) holds for an nn.LazyLinear too


def lazy_size(module: str, shape: Shape) -> int:
    """The size a lazy module's first call reads off its input's shape, as torch's initialize_parameters does;
    ValueError with torch's complaint when the input cannot have one."""
    if module == "Linear":
        if not shape:
            raise ValueError("its input is a 0-d tensor, which has no in_features (its last dim)")
        return shape[-1]
    if module.startswith("Conv"):
        spatial = int(module[-2])
        if len(shape) not in (spatial + 1, spatial + 2):
            raise ValueError(f"expected {spatial + 1}D (unbatched) or {spatial + 2}D (batched) input, but got input of "
                             f"size: {list(shape)}")
        return shape[1] if len(shape) == spatial + 2 else shape[0]
    if len(shape) < 2:
        raise ValueError(f"its input of size {list(shape)} has no dim 1 to read num_features from")
    return shape[1]


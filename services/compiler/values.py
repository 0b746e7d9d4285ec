"""What a program's expressions evaluate to at compile time: tensors (graph names), Python constants,
torch dtypes, nn modules, torch.Generators, and objects whose methods gradtrace accepts but does not trace
(optimizers)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.compiler.layers import LayerDef
from services.ir import Event, Stream

TENSOR_ATTRIBUTES = ("shape", "ndim", "dtype", "requires_grad", "is_leaf", "data", "T", "mT", "grad", "grad_fn", "device")
"""What every tensor has (hasattr(x, "grad") is True)."""

DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "int64": "int64", "long": "int64", "bool": "bool",
}
"""torch dtype attribute names and the dtype each means."""


@dataclass(frozen=True)
class T:
    """A tensor: the name of a leaf or node in the graph."""

    name: str


@dataclass(frozen=True)
class DType:
    """torch.float32 and friends."""

    name: str
    legacy: str | None = field(default=None, compare=False)
    """The legacy type it was read from (`Tensor = torch.FloatTensor`), which a program may call: `Tensor(3, 1)`."""


@dataclass
class ModuleInst:
    """An nn module the program built: its layer, config and (once it has a path) its parameter leaves."""

    layer: LayerDef | None
    """None for nn.Sequential."""
    cfg: Any
    event: Event | None = None
    """The torch stream event that draws its parameters; its targets are filled in when the module gets a path."""
    children: list[Any] = field(default_factory=list)
    """ModuleInsts, and Instances of the program's own nn.Module classes."""
    path: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    training: bool = True
    hint: str | None = None
    """The path it takes if nothing names it before it is used: a function's local variable ('make.layer'); a
    module a function returns is named by the caller's variable instead, as torch names it by where it ends up."""
    container: str = "Sequential"
    """Without a layer: 'Sequential' (called: its children in turn), 'ModuleList' (indexed and looped over) or
    'ModuleDict' (children by name)."""
    keys: list[str] | None = None
    """A ModuleDict's names of its children, in order (they name the children's paths: 'model.blocks.attn')."""
    copy_of: str | None = None
    """A copy.deepcopy's: 'values' (its parameters take the original's values, a 'clone' event) or 'construction' (the
    original had no name yet: the values its construction draws, for the copy too)."""
    copy_site: Any = None
    """The copy.deepcopy call that made it (the source position of its buffers' clones)."""
    parts: list[tuple[str, ModuleInst]] | None = None
    """The submodules a composite torch module holds over its own parameters (an attention's out_proj, an encoder
    layer's linear1), made when first asked for (services.compiler.transformer.parts)."""
    lazy: dict[str, Any] | None = None
    """An nn.LazyLinear / LazyConv2d / ... before its first call: its constructor's arguments, which that call
    completes with the size it reads off its input (then cfg, the parameters and their draws, as in torch)."""
    norms: dict[str, tuple[int, str]] = field(default_factory=dict)
    """nn.utils.weight_norm's (or its parametrizations form's) parameters, by the weight's name: (dim, style); the
    module holds g and v for it, and the weight is recomputed from them before each call, as torch's hook does."""
    stand_in: bool = False
    """Its path is a function's local ('make.layer') or its class's name ('Linear#2'), given when a function used its
    parameters before anything named it (CleanRL's `layer_init(nn.Linear(...))`): the place it ends up renames it
    ('agent.critic.0')."""

    def child_name(self, i: int) -> str:
        """The i-th child's name in its path: its index, a ModuleDict's key."""
        return self.keys[i] if self.keys is not None else str(i)

    @property
    def kind(self) -> str:
        """'Conv2d', 'Sequential', 'ModuleList', ..."""
        if self.lazy is not None and self.layer is not None:
            return f"Lazy{self.layer.module}"
        return self.layer.module or self.layer.type if self.layer else self.container

    def set_training(self, flag: bool) -> None:
        """model.train() / model.eval(): recursively."""
        self.training = flag
        for c in [*self.children, *(p for _, p in self.parts or [])]:
            c.set_training(flag)

    def __bool__(self) -> bool:
        """As in torch: an empty nn.Sequential/ModuleList is false (they have a length), any other module true."""
        return self.layer is not None or bool(self.children)


@dataclass(frozen=True)
class Untraced:
    """An object the program may use only in ways that do not change the trace (an optimizer,
    model.parameters(), max's indices); `what` says what it is in messages."""

    what: str


@dataclass(frozen=True)
class Foreign:
    """A name imported from a module gradtrace does not trace (`import inspect`, `from tqdm import tqdm`): accepted
    as pasted scripts have them, refused where the program uses it. `@dataclass` is the one such name understood."""

    path: str
    """'inspect', 'dataclasses.dataclass'."""


class ParameterList(list):  # type: ignore[type-arg]
    """nn.ParameterList([...]): its parameters, registered with the module it is set on ('model.coefs.0')."""

    path: str | None = None
    """Where it is set ('model.coefs'), once it is: what names a parameter appended later."""


class ParameterDict(dict):  # type: ignore[type-arg]
    """nn.ParameterDict({...}): its parameters by key, registered with the module it is set on ('model.extra.scale')."""

    path: str | None = None


@dataclass(frozen=True)
class FloatInfo:
    """torch.finfo(dtype) / np.finfo(dtype): a float type's limits as numbers (`eps = np.finfo(np.float32).eps.item()`)."""

    bits: int
    eps: float
    max: float
    min: float
    tiny: float
    resolution: float
    smallest_normal: float


@dataclass(eq=False)
class Distribution:
    """A torch.distributions object the program made (Categorical, Normal): its parameter tensors by torch's attribute
    names, as torch holds them (Categorical's probs normalised; its logits or probs added on first use)."""

    kind: str
    params: dict[str, T]
    batch_shape: tuple[int, ...]
    base: str | None
    """The variable it was made for ('m': its parameters are m.probs, m.logits), None when made inline."""


@dataclass(eq=False)
class Dataset:
    """torch.utils.data.TensorDataset(X, y): sample i is (X[i], y[i])."""

    tensors: tuple[T, ...]
    size: int


@dataclass(eq=False)
class Loader:
    """torch.utils.data.DataLoader over a TensorDataset: batches of `batch_size` rows, in order or shuffled as torch's
    RandomSampler shuffles them."""

    dataset: Dataset
    batch_size: int
    shuffle: bool
    drop_last: bool
    workers: int = 0
    """num_workers: no numbers change, but the iterator hands out indices at once (the sampler's seed is drawn then)."""

    def __len__(self) -> int:
        n, b = self.dataset.size, self.batch_size
        return n // b if self.drop_last else -(-n // b)


@dataclass(eq=False)
class Epoch:
    """One pass over a DataLoader (`for xb, yb in loader:`, `it = iter(loader)`): torch's iterator, its order (the
    sampler's permutation, a leaf, drawn at the first batch) and the next batch's position."""

    loader: Loader
    order: T | None = None
    position: int = 0
    offset: int = 0
    """The position a loop over it started at (`next(it)` first, then `for xb in it:`): its batch k is offset + k."""

    def __len__(self) -> int:
        return len(self.loader) - self.position


@dataclass
class Generator:
    """A torch.Generator the program made: its own stream of draws (`torch.randn(..., generator=g)`)."""

    stream: Stream


Value = Any
"""T | int | float | bool | str | None | tuple | list | DType | ModuleInst | Untraced."""


def is_number(v: Value) -> bool:
    """A Python int or float (bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class UserFunction:
    """A `def` of the program, inlined at each call: its body runs with its parameters bound, in a scope of its own."""

    node: ast.FunctionDef
    defaults: dict[str, Any] = field(default_factory=dict)
    """Parameters' default values (constants, evaluated at the def as Python does)."""
    no_grad: bool = False
    """Decorated @torch.no_grad() (or inference_mode): its body runs without a graph."""
    refused: str = ""
    """Why a call of it is refused (a decorator gradtrace does not trace); a def never called is fine."""
    owner: UserClass | None = None
    """The class whose body defines it (a method): where super() looks next."""
    binding: str = "method"
    """How a class binds it: 'method' (self first), 'property' (read as an attribute), 'staticmethod', 'classmethod'."""
    closure: Mapping[str, Any] = field(default_factory=dict)
    """A lambda's enclosing scopes (`lambda x: self.fc(x)` in a method, a comprehension's names): read when it runs,
    so a name rebound after the lambda was made is seen as Python sees it."""

    @property
    def name(self) -> str:
        return self.node.name


@dataclass
class UserClass:
    """A `class Net(nn.Module)` of the program: its methods by name."""

    name: str
    methods: dict[str, UserFunction]
    attrs: dict[str, Any] = field(default_factory=dict)
    """Class attributes (`expansion = 1`): constants every object reads through self."""
    base: UserClass | None = None
    """The program's class it derives from (None: nn.Module itself, or `object` for a plain class)."""
    module: bool = True
    """An nn.Module subclass; False: a plain class (a `@dataclass` config) whose objects only hold values."""
    fields: list[str] | None = None
    """A `@dataclass`'s fields in order (its generated __init__'s parameters); None: not a dataclass."""
    torch_base: str | None = None
    """The torch.nn layer it derives from (`class BinaryLinear(nn.Linear)`: 'Linear'), itself or through a base."""


@dataclass(frozen=True)
class ClassRef:
    """A class named by its path (nn.Linear, torch.Tensor, int): what type(x) gives and nn.Linear means as a value."""

    path: str


@dataclass(frozen=True)
class Bound:
    """A method read off an object without calling it (`self._init_weights`, passed to `model.apply`)."""

    fn: UserFunction
    obj: Instance


@dataclass
class Instance:
    """An object of a program's nn.Module subclass. `path` (its variable, 'model') prefixes what __init__ sets on it:
    `self.fc1 = nn.Linear(...)` is the module 'model.fc1' with parameters 'model.fc1.weight' and 'model.fc1.bias'."""

    cls: UserClass
    path: str
    attrs: dict[str, Any] = field(default_factory=dict)
    training: bool = True
    final: bool = True
    """False while its path is provisional (made where nothing named it, `[Block(), Block()]` in a helper): the
    container or attribute it is put in names it and its modules then ('net.layer1.0'), as torch's names go."""
    pinned: bool = False
    """A tensor was named under its provisional path (an nn.Parameter in __init__): the path stays."""
    placeable: bool = False
    """Made final under its provisional path because something used it first (its own __init__ reading `self.conv1`):
    the first place it is put in (`nn.Sequential(*layers)` -> net.network.0) still renames it at the end."""
    torch_module: Any = None
    """The torch.nn layer its class derives from, as built by `super().__init__(...)` (a ModuleInst whose parameters
    are the object's: self.weight), which `super().forward(x)` runs."""

    @property
    def kind(self) -> str:
        return self.cls.name

    def set_training(self, flag: bool) -> None:
        """model.train() / model.eval(): the object and every module it holds, recursively."""
        self.training = flag
        for v in [*self.attrs.values(), self.torch_module]:
            if isinstance(v, (ModuleInst, Instance)):
                v.set_training(flag)


def container_of(v: Value) -> Value:
    """An object of a program's nn.Sequential or nn.ModuleList subclass as the container its __init__ made (indexed,
    iterated and measured as one); any other value as it is."""
    if isinstance(v, Instance) and isinstance(v.torch_module, ModuleInst) and v.torch_module.layer is None:
        return v.torch_module
    return v


def receiver(fn: UserFunction, obj: Instance | UserClass) -> list[Value]:
    """What a method gets before its arguments: the object, its class (a classmethod) or nothing (a staticmethod)."""
    if fn.binding == "staticmethod":
        return []
    if fn.binding == "classmethod":
        return [obj.cls if isinstance(obj, Instance) else obj]
    return [obj]


@dataclass(eq=False)
class AutogradFunction:
    """A program's `class MyReLU(torch.autograd.Function)`: its static forward(ctx, ...) and backward(ctx, grad)."""

    name: str
    forward: UserFunction
    backward: UserFunction
    attrs: dict[str, Any] = field(default_factory=dict)
    """Class attributes (`scale = 10.0`, read as `SurrGradSpike.scale`)."""


@dataclass(frozen=True)
class Applier:
    """`MyReLU.apply`, called or held (`relu = MyReLU.apply`)."""

    fn: AutogradFunction


@dataclass(eq=False)
class Ctx:
    """The ctx an autograd.Function's forward and backward get: what forward saves (save_for_backward, attributes)
    and which inputs need a gradient."""

    needs_input_grad: tuple[bool, ...]
    saved: tuple[Any, ...] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    phase: str = "forward"


CALLABLE = (UserFunction, UserClass, Instance, Bound, ClassRef, Applier)
"""What a program may call besides modules: its own functions, classes, objects and bound methods, and torch's
classes and functions held as values (`act = F.relu`)."""


class TorchVersion(str):
    """torch.__version__ as torch gives it: a string that compares as a version (`torch.__version__ >= '1.5.0'`, in
    the Time-Series-Library's embeddings; '2.13.0' is after '2.2', as torch's TorchVersion has it)."""

    def _key(self, other: object) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        def parts(v: object) -> tuple[Any, ...]:
            """(release numbers, a local label's presence and text): '2.13.0+cpu' sorts after '2.13.0', as PEP 440."""
            if isinstance(v, (tuple, list)):
                return (tuple(int(p) for p in v), 0, "")
            public, _, local = str(v).partition("+")
            nums = [re.match(r"\d*", p).group() for p in public.split(".")]  # type: ignore[union-attr]
            return (tuple(int(n) for n in nums if n), 1 if local else 0, local)
        return parts(self), parts(other)

    def __lt__(self, other: object) -> bool:
        a, b = self._key(other)
        return a < b

    def __le__(self, other: object) -> bool:
        a, b = self._key(other)
        return a <= b

    def __gt__(self, other: object) -> bool:
        a, b = self._key(other)
        return a > b

    def __ge__(self, other: object) -> bool:
        a, b = self._key(other)
        return a >= b


def torch_version() -> str:
    """The installed torch's version (without importing torch: the API compiles programs too)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "2.13.0"

"""Calls in a program's expressions, dispatched by what is called: a name (a module object, a program's function, a
builtin), a dotted path (torch's functions, nn's constructors, tensor creation, distributions, data, optimizers), or
a method of a value (a tensor, a module, a dict, a list, a string, a program's object)."""

from __future__ import annotations

import ast
from typing import Any

from services.compiler.arranging import FUNCTIONS as ARRANGING
from services.compiler.builtins import BUILTINS
from services.compiler.creation import CREATORS, INPLACE_INIT
from services.compiler.data import PATHS as DATA_PATHS
from services.compiler.distributions import PATHS as DISTRIBUTIONS
from services.compiler.expressions import MATH, ExpressionCompiler, _is_const, _kind
from services.compiler.functions import is_super
from services.compiler.layers import BY_MODULE
from services.compiler.module_hooks import KINDS as HOOK_KINDS
from services.compiler.module_tree import MODULE_WALKS
from services.compiler.torch_functions import inplace_keyword
from services.compiler.transformer import parts
from services.compiler.values import (
    CALLABLE,
    AutogradFunction,
    ClassRef,
    Distribution,
    DType,
    Generator,
    Instance,
    ModuleInst,
    T,
    Untraced,
    UserClass,
    Value,
    is_number,
    receiver,
)

MODULES = {
    "torch": "torch", "torch.nn": "torch.nn", "torch.nn.functional": "torch.nn.functional", "math": "math",
    "numpy": "numpy", "torch.nn.init": "torch.nn.init", "torch.optim": "torch.optim", "copy": "copy",
    "torch.distributions": "torch.distributions", "torch.distributions.categorical": "torch.distributions.categorical",
    "torch.distributions.normal": "torch.distributions.normal", "string": "string", "torch.autograd": "torch.autograd",
    "torch.utils": "torch.utils", "torch.utils.data": "torch.utils.data", "torch.nn.utils": "torch.nn.utils",
    "torch.nn.utils.parametrizations": "torch.nn.utils.parametrizations", "torch.optim.lr_scheduler": "torch.optim.lr_scheduler",
}
"""Importable modules and the path each stands for."""

RETURNS_SELF = INPLACE_INIT | {"requires_grad_", "cpu"}
"""Methods that return the tensor they are called on."""

OPTIMIZERS = {"SGD", "Adam", "AdamW", "RMSprop", "Adagrad"}

LEGACY_CONSTRUCTORS = {"torch.Tensor": None, "torch.FloatTensor": "float32", "torch.DoubleTensor": "float64",
                       "torch.LongTensor": "int64"}
"""torch's legacy tensor constructors and their dtypes (None: the default dtype): a list's values, or sizes."""

PYTHON_DTYPES = {"bool": "bool", "float": "float64", "int": "int64"}
"""dtype=bool / float / int: torch.bool, torch.float64 (Python's float is a double), torch.int64."""


class Calls(ExpressionCompiler):
    """Every call in an expression, by what is called."""

    def makes_leaf(self, e: ast.expr) -> bool:
        """Whether `e` is a call that makes a new tensor (`torch.empty(2)`, `torch.randn(3).mul_(0.1)`), whose in-place
        initialisers change the leaf rather than add nodes."""
        while isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr in RETURNS_SELF:
            e = e.func.value
        path = self.dotted(e.func) if isinstance(e, ast.Call) else None
        return path is not None and (path.removeprefix("torch.") in CREATORS or path in LEGACY_CONSTRUCTORS or path == "nn.Parameter")

    def call(self, node: ast.Call) -> Value:
        f = node.func
        for k in node.keywords:  # `torch.eye(n, dtype=bool)` (SimCLR's mask): Python's types as torch takes them
            if k.arg == "dtype" and isinstance(k.value, ast.Name) and k.value.id in PYTHON_DTYPES and k.value.id not in self.scope:
                k.value = ast.copy_location(ast.Constant(DType(PYTHON_DTYPES[k.value.id])), k.value)
        if (any(isinstance(a, ast.Starred) for a in node.args) and self.dotted(f) != "nn.Sequential"
                or any(k.arg is None for k in node.keywords)) and not self.unpacks_into_user_code(node):
            node = self.spread(node)  # x.view(b, *shape), torch.zeros(*size), nn.Linear(d, d, **factory_kwargs)
        if self.foreign_path(f) == "collections.OrderedDict":
            return self.ordered_dict(node)
        if (foreign := self.foreign_path(f)) is not None and foreign.startswith("random."):
            return self.python_random(foreign, node)  # random.random() < eps, random.shuffle(idx) after random.seed(0)
        self.refuse_foreign(f)
        if isinstance(f, ast.Name) and not (f.id in self.aliases and f.id not in self.scope
                                            and self.aliases[f.id] not in MODULES.values()):
            return self.call_name(f.id, node)  # (`Linear(4, 3)` imported from torch.nn goes on as nn.Linear)
        if not isinstance(f, (ast.Attribute, ast.Name)):  # nn.MSELoss()(a, b), net[0](x)
            v = self.expr(f)
            if isinstance(v, ModuleInst):
                return self.module_call(v, node)
            if isinstance(v, CALLABLE):
                return self.call_value(v, node)
            if isinstance(v, ClassRef) and v.path.startswith("nn."):  # getattr(nn, rnn_type)(ninp, nhid, nlayers)
                return self.call_path(v.path, node)
            raise self.err(node, f"'{self.src(f)[:60]}' cannot be called")
        if is_super(node):
            return self.super_call(node)
        path = self.dotted(f)
        if node is self.stmt_expr and ((path == "nn.Parameter" or path.startswith("nn.init.")) and node.args if path is not None
                                       else f.attr in RETURNS_SELF
                                       and (f.attr[:-1] not in self.methods or self.makes_leaf(f.value)
                                            or isinstance(f.value, (ast.Name, ast.Attribute, ast.Subscript)))):
            # `w = torch.empty(2).uniform_()` names the tensor w, `w = y.mul_(2)` y's binding; `y = (x * 2).add_(1)`
            # names the add, a node of its own; `w = nn.init.normal_(torch.empty(3, 2))` the tensor it fills
            self.stmt_expr = f.value if path is None else node.args[0]
        if path is not None:
            return self.call_path(path, node)
        assert isinstance(f, ast.Attribute)
        return self.method_call(self.expr(f.value), node)

    def method_call(self, base: Value, node: ast.Call) -> Value:
        """`<receiver>.method(...)` on the receiver's value (evaluated once, by the caller): a tensor's, a module's, a
        distribution's, a dict's, a list's, a string's method, by what the value is."""
        f = node.func
        assert isinstance(f, ast.Attribute)
        if isinstance(base, T):
            return self.tensor_method(base, f.attr, node)
        if isinstance(base, Generator) and f.attr == "manual_seed":
            return self.seed_generator(base, node)
        if isinstance(base, Distribution):
            return self.distribution_method(base, f.attr, node)
        if is_number(base) and f.attr == "item" and not node.args and not node.keywords:
            return base  # np.finfo(np.float32).eps.item(): the number itself
        if isinstance(base, Instance):
            return self.instance_method(base, f.attr, node)
        if isinstance(base, str):
            return self.string_method(base, f.attr, node)
        if isinstance(base, ModuleInst) and f.attr == "apply":
            return self.module_apply(base, node)
        if isinstance(base, AutogradFunction) and f.attr == "apply":  # MyReLU.apply(x)
            return self.apply_function(base, node)
        if isinstance(base, (ModuleInst, Instance)) and f.attr in HOOK_KINDS:  # handle = m.register_forward_hook(...)
            return self.register_module_hook(base, f.attr, node)  # type: ignore[return-value]
        if isinstance(base, ModuleInst) and f.attr in MODULE_WALKS:
            return self.module_walk(base, f.attr, node)
        if isinstance(base, UserClass) and f.attr in base.methods:  # Base.__init__(self, d): a method called on the class
            fn = base.methods[f.attr]
            args, kwargs = self.call_args(node)
            return self.call_user(fn, [*(receiver(fn, base) if fn.binding == "classmethod" else []), *args], kwargs, node,
                                  prefix=f"{self.prefix}", named=f.attr != "__init__")
        if isinstance(base, (ModuleInst, Instance)) and f.attr == "requires_grad_":
            return self.module_requires_grad(base, node)
        if isinstance(base, ModuleInst):
            if base.keys is not None and f.attr in base.keys:  # self.transformer.wte(idx): a ModuleDict's child
                child = base.children[base.keys.index(f.attr)]
                return self.module_call(child, node) if isinstance(child, ModuleInst) else self.call_value(child, node)
            if f.attr == "forward":
                return self.module_call(base, node, hooks=False)  # (torch's hooks run on calls of the module only)
            part = dict(parts(base)).get(f.attr)  # layer.self_attn(x, x, x): a composite's submodule
            if part is not None:
                return self.module_call(part, node)
            if f.attr == "activation" and base.layer is not None and base.layer.type.startswith("transformer_"):
                return self.call_path(f"F.{base.cfg.activation}", node)  # layer.activation(h): F.relu / F.gelu
            if f.attr in ("parameters", "named_parameters"):
                return self.module_parameters(base, f.attr, node)
            if f.attr in ("float", "double", "to"):
                return self.module_cast(base, f.attr, node)
            if f.attr in ("train", "eval"):  # `net = nn.Sequential(...).train()`: the module itself, as torch returns
                base.set_training(self.training_flag(f.attr, node))
                return base
            if f.attr == "cpu":
                return base
            if f.attr == "generate_square_subsequent_mask" and base.kind == "Transformer":  # a staticmethod
                return self.square_subsequent_mask(node)
        if (isinstance(base, dict) or isinstance(base, ModuleInst) and base.container == "ModuleDict") and f.attr in (
                "items", "keys", "values", "get"):
            return self.mapping_method(base, f.attr, node)
        if isinstance(base, dict) and f.attr == "copy" and not node.args and not node.keywords:
            return dict(base)  # lit-gpt's `config = name_to_config[name].copy()`: a shallow copy
        if isinstance(base, dict) and f.attr == "update" and len(node.args) <= 1:
            other = self.expr(node.args[0]) if node.args else {}
            pairs = list(other.items()) if isinstance(other, dict) else other
            if not isinstance(pairs, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
                raise self.err(node, "dict.update takes a dict, (key, value) pairs or keywords")
            base.update({self.check_key(k, node): v for k, v in pairs} | {k.arg: self.expr(k.value) for k in node.keywords
                                                                          if k.arg})
            return None
        if isinstance(base, list) and f.attr == "pop":
            return self.list_pop(base, node)
        if isinstance(base, (list, tuple)) and f.attr in ("index", "count"):
            return self.sequence_search(base, f.attr, node)
        raise self.err(node, f"'{self.src(f)[:60]}': {_kind(base)} has no method '{f.attr}' gradtrace understands")

    def call_name(self, fn: str, node: ast.Call) -> Value:
        if fn in self.scope:
            v = self.scope[fn]
            if isinstance(v, ModuleInst):
                return self.module_call(v, node)
            if isinstance(v, CALLABLE):
                return self.call_value(v, node)
            if isinstance(v, DType) and v.legacy is not None:  # PyTorch-GAN's `Tensor = torch.FloatTensor`, then
                return self.call_path(v.legacy, node)  # `Tensor(imgs.size(0), 1).fill_(1.0)`: torch.FloatTensor(...)
            raise self.err(node, f"{_kind(v)} is not callable")
        if fn in self.aliases:  # `from torch.nn import Linear`: Linear(4, 3) is nn.Linear(4, 3)
            path = self.dotted(node.func)
            if path is None or self.aliases[fn] in MODULES.values():
                raise self.err(node, f"the module '{fn}' is not callable")
            return self.call_path(path, node)
        if fn in BUILTINS and (v := self.builtin(fn, node)) is not NotImplemented:
            return v
        if fn in self.functions:
            return self.apply(self.functions[fn], node)
        raise self.err(node, f"unknown function '{fn}'")

    def call_path(self, path: str, node: ast.Call) -> Value:
        if path == "torch.Generator":
            return self.new_generator(node)
        if path in DISTRIBUTIONS:
            return self.distribution(DISTRIBUTIONS[path], node)
        if path in ("torch.distributions.kl_divergence", "torch.distributions.kl.kl_divergence"):
            return self.kl_divergence(node)
        if path in DATA_PATHS:
            return self.data_object(path, node)
        if path in ("nn.utils.weight_norm", "nn.utils.parametrizations.weight_norm"):
            return self.weight_norm(path, node)  # type: ignore[attr-defined]
        if path == "torch.multinomial":
            return self.multinomial(node)
        if path == "torch.bernoulli":
            return self.bernoulli(node)
        if path == "torch.normal" and (v := self.normal_of_tensors(node)) is not NotImplemented:
            return v
        if path in ARRANGING:
            return self.arrange(path.rsplit(".", 1)[1], node)
        if (v := self.function_form(path, node)) is not NotImplemented:
            return v  # F.normalize, F.relu6, g = F.relu_(h), torch.unbind(x, 1), ...
        if path == "nn.init.calculate_gain":  # nn.init.calculate_gain('relu'): torch's table
            return self.init_gain(node)
        if path in ("nn.init._calculate_fan_in_and_fan_out", "nn.init._calculate_correct_fan"):
            return self.fans(path.rsplit(".", 1)[1], node)  # nn.Linear.reset_parameters copied into a module
        if path.startswith("nn.init."):  # in an expression (a lambda's body): the tensor, as torch returns it
            return self.nn_init(path[8:], node)  # the tensor it filled (`nn.Parameter(nn.init.xavier_uniform_(torch.empty(4, 3)))`)
        if path in ("torch.cuda.is_available", "torch.backends.mps.is_available"):
            return False  # the spec's device decides where a job runs; the program's own choice is always the CPU
        if path == "torch.is_grad_enabled" and not node.args and not node.keywords:
            return self.builder.grad_enabled  # False under torch.no_grad() (d2l's batch norm from scratch tests it)
        if path == "copy.deepcopy":
            return self.deepcopy(node)
        if path in ("torch.autograd.gradcheck", "torch.autograd.gradgradcheck"):  # the Extending PyTorch docs' check
            self.res.notes.append(f"line {node.lineno}: {path} is not run: gradtrace's numeric engine checks every "
                                  "gradient against finite differences (add \"numeric\" to the spec's engines, or "
                                  "`gradtrace run --engines torch,reference,numeric`)")
            return Untraced(f"{path}'s result")
        if path == "torch.autograd.grad":
            return self.autograd_grad(node)
        if path == "torch.device":  # `device = torch.device("cpu")`: the spec's device decides, `.to(device)` keeps it
            return str(self.const(node.args[0])) if node.args else "cpu"
        if path == "torch.autograd.Variable":  # 2017's `Variable(torch.randn(N, D), requires_grad=True)`: the tensor
            given = dict(zip(("data", "requires_grad"), node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
            if "data" not in given or set(given) - {"data", "requires_grad", "volatile"}:
                raise self.err(node, "Variable takes a tensor and requires_grad=")
            t = self.tensor(given["data"])
            temp = bool(self.stmt_names) and t.name.startswith(self.stmt_names[0] + "#")  # made by this statement
            if self.builder.grad[t.name] or not temp:
                t = self.emit("detach", [t], {}, node)  # torch's Variable is a new tensor (detached), not w itself
            if "requires_grad" in given and self.const(given["requires_grad"]):
                self.requires_grad(t, True, node)
            return t
        if path in LEGACY_CONSTRUCTORS:  # torch.Tensor([...]) (micrograd's lecture), torch.FloatTensor(n, m) (GCN code)
            dtype = LEGACY_CONSTRUCTORS[path] or self.dtype
            a = node.args[0] if len(node.args) == 1 else None
            size = isinstance(a, ast.Attribute) and a.attr == "shape" or (  # torch.Tensor(x.shape): a torch.Size
                isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute) and a.func.attr == "size")
            if a is not None and not size and isinstance(self.const(a), list):
                return self.create("tensor", node, self.name_for(node), legacy=True, dtype=dtype)
            return self.create("empty", node, self.name_for(node), dtype=dtype)  # sizes: uninitialised, as torch.empty
        if path in ("F.softmax", "F.log_softmax") and len(node.args) == 1 and not any(k.arg == "dim" for k in node.keywords):
            return self.implicit_softmax(path, node)
        inplace_keyword(node, path)
        if path.startswith("F.") and path in self.functions and node.args and any(k.arg == "inplace" for k in node.keywords):
            return self.inplace_function(path, node)
        if path in ("torch.max", "torch.min", "torch.median") and (any(k.arg == "dim" for k in node.keywords) or (
                len(node.args) > 1 and _is_int_literal(node.args[1], self.scope))):
            return self.extreme_pair(path[6:], node)
        if path in ("torch.topk", "torch.sort", "torch.var_mean", "torch.std_mean", "torch.cummax", "torch.cummin"):
            return self.extreme_pair(path[6:], node)
        if path == "torch.argsort":
            return self.apply(self.functions["sort"], node, extra={"part": "indices"})
        if path in ("torch.max", "torch.min") and len(node.args) == 2:  # torch.max(x, other) is torch.maximum
            return self.apply(self.functions[f"{path}imum"], node)
        if path.startswith("nn.") and path[3:] in BY_MODULE or path in ("nn.Sequential", "nn.ModuleList", "nn.ModuleDict"):
            return self.construct(path[3:], node)
        if path == "nn.Parameter":
            return self.parameter(node)
        if path == "nn.Embedding.from_pretrained":
            return self.from_pretrained(node)
        if path in ("nn.ParameterList", "nn.ParameterDict"):
            return self.parameter_container(path[3:], node)
        if path.startswith("torch.optim.") and path[12:] in OPTIMIZERS:
            return Untraced(f"the optimizer {path}")
        if path.startswith("torch.optim.lr_scheduler."):
            return Untraced(f"the learning rate scheduler {path}")
        if path.startswith("torch.") and path[6:] in CREATORS:
            return self.create(path[6:], node, self.name_for(node))
        if path == "torch.as_tensor" and node.args:  # of numbers: torch.tensor; of a tensor: it, cast to dtype= if given
            b, before = self.builder, (len(self.builder.nodes), len(self.builder.leaves), len(self.stream.events))
            v = self.expr(node.args[0])
            if isinstance(v, T):
                if any(k.arg not in ("dtype", "device") for k in node.keywords) or len(node.args) > 1:
                    raise self.err(node, "torch.as_tensor of a tensor takes dtype= (and device=) here")
                dt = next((self.const(k.value) for k in node.keywords if k.arg == "dtype"), None)
                if dt is None or isinstance(dt, DType) and dt.name == self.dtype_of(v):
                    return v
                if not isinstance(dt, DType):
                    raise self.err(node, f"torch.as_tensor: dtype must be a torch dtype, not {_kind(dt)}")
                return self.emit("to", [v], {"dtype": dt.name}, node)  # (Spinning Up's clipfrac)
            if (len(b.nodes), len(b.leaves), len(self.stream.events)) != before or not _is_const(v):
                raise self.err(node, "torch.as_tensor takes a tensor, or numbers and lists of them")
            once = ast.copy_location(ast.Call(func=node.func, args=[ast.copy_location(ast.Constant(v), node.args[0]),
                                                                    *node.args[1:]], keywords=node.keywords), node)
            return self.create("tensor", once, self.name_for(node))  # (its value as evaluated: once, as Python does)
        if path in ("F.dropout", "torch.dropout"):
            return self.dropout(node)
        if path in ("F.dropout1d", "F.dropout2d", "F.dropout3d"):
            return self.dropout(node, path[2:])
        if path in ("torch.chunk", "torch.split"):
            return self.multi(path[6:], self.tensor(node.args[0]) if node.args else None, node, node.args[1:])
        if path in ("torch.finfo", "numpy.finfo") or path.split(".", 1)[0] in ("math", "numpy") and path.split(".", 1)[1] in MATH:
            return self.number_function(path, node)  # math.sqrt(d), np.log(1 / 0.07), np.finfo(np.float32).eps
        if path in self.functions:
            return self.apply(self.functions[path], node)
        if path == "torch.manual_seed":
            raise self.err(node, "torch.manual_seed(...) must be a statement of its own")
        raise self.err(node, f"unknown function '{path}'")


def _is_int_literal(node: ast.expr, scope: dict[str, Any]) -> bool:
    """An int written out (1, -1) or a name bound to one: a dim, not a tensor."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    if isinstance(node, ast.Name):
        return isinstance(scope.get(node.id), int)
    return isinstance(node, ast.Constant) and isinstance(node.value, int)

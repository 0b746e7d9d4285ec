"""nn modules in a program: construction (arguments checked, parameters drawn in program order), paths
('net.0' inside a Sequential) that name their parameters as torch does, and calls that add the layer's nodes."""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.layers import (
    BY_MODULE,
    LAYERS,
    Call,
    Emitter,
    LayerDef,
    add_params,
    param_event,
    torch_attribute,
)
from services.compiler.lazy import lazy_size
from services.compiler.losses import TENSOR_ARGS
from services.compiler.transformer import Masks, parts, synced
from services.compiler.values import ClassRef, DType, Instance, ModuleInst, T, Value, is_number
from services.errors import argument_error
from services.ir import Event
from shared.spec import ChannelDropoutLayer, DropoutLayer

_DECODER = ("tgt", "memory", "tgt_mask", "memory_mask", "tgt_key_padding_mask", "memory_key_padding_mask", "tgt_is_causal",
            "memory_is_causal")
_TGT = ("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal")
_MEMORY = ("memory_mask", "memory_key_padding_mask", "memory_is_causal", False)
TRANSFORMER_CALLS: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, tuple[Any, ...]]]] = {
    "transformer_encoder_layer": (("src", "src_mask", "src_key_padding_mask", "is_causal"), ("src",),
                                  {"masks": ("src_mask", "src_key_padding_mask", "is_causal", False)}),
    "transformer_encoder": (("src", "mask", "src_key_padding_mask", "is_causal"), ("src",),
                            {"masks": ("mask", "src_key_padding_mask", "is_causal", None)}),
    "transformer_decoder_layer": (_DECODER, ("tgt", "memory"), {"masks": (*_TGT, False), "memory": _MEMORY}),
    "transformer_decoder": (_DECODER, ("tgt", "memory"), {"masks": (*_TGT, None), "memory": _MEMORY}),
    "transformer": (("src", "tgt", "src_mask", "tgt_mask", "memory_mask", "src_key_padding_mask", "tgt_key_padding_mask",
                     "memory_key_padding_mask", "src_is_causal", "tgt_is_causal", "memory_is_causal"), ("src", "tgt"),
                    {"src": ("src_mask", "src_key_padding_mask", "src_is_causal", None), "masks": (*_TGT, None),
                     "memory": _MEMORY}),
}
"""A transformer module's call: its parameters (torch's order), its tensors, and per attention (the options key of
services.compiler.transformer) the names of its mask, padding mask and causal hint, and the hint's default (None: the
stack detects a causal mask)."""


class ModuleCalls(ExpressionCompiler):
    """nn.Conv2d(...), nn.Sequential(...), conv(x), F.dropout(x)."""

    def construct(self, cls: str, node: ast.Call) -> ModuleInst:
        """nn.Conv2d(...), nn.Sequential(...): arguments checked now, parameters drawn in program order."""
        if cls in ("Sequential", "ModuleList"):
            return self.container(cls, node)
        if cls == "ModuleDict":
            return self.module_dict(node)
        if cls in ("TransformerEncoder", "TransformerDecoder"):
            return self.transformer_stack(cls, node)
        d = BY_MODULE[cls]
        lazy = cls != d.module  # nn.LazyLinear(10): its first call reads the first argument off its input
        names = d.positional()[lazy:]
        if len(node.args) > len(names):
            raise self.err(node, f"nn.{cls} takes at most {len(names)} positional arguments")
        tensors = TENSOR_ARGS & set(d.schema.model_fields)  # nn.CrossEntropyLoss(weight=w): the tensor's name

        def arg(name: str | None, a: ast.expr) -> Any:
            if name == "activation" and d.type.startswith("transformer"):
                return self.activation_arg(a, cls)
            if name in tensors:  # evaluated once (`weight=torch.rand(4) + 0.5` draws once)
                v = self.expr(a)
                if v is None or isinstance(v, T):
                    return v.name if isinstance(v, T) else None
                raise self.err(a, f"nn.{cls}: {name} is a tensor or None, not {_kind(v)}")
            return self.const(a)

        data: dict[str, Any] = {n: arg(n, a) for n, a in zip(names, node.args, strict=False)}
        for k in node.keywords:
            if k.arg in data:
                raise self.err(k.value, f"nn.{cls}: '{k.arg}' given twice")
            data[k.arg] = arg(k.arg, k.value)
        if "type" in d.schema.model_fields:
            data["type"] = d.type
        data.pop("device", None)  # nn.Linear(4, 3, device=device): the spec's device decides where a job runs
        if "bias" in data and data["bias"] is None and d.schema.model_fields.get("bias") is not None and \
                d.schema.model_fields["bias"].annotation is bool:
            data["bias"] = False  # nn.Linear(h, o, bias=None) (hamiltonian-nn): torch's `if bias:` takes it as False
        if "dtype" in data and "dtype" not in d.schema.model_fields:  # factory kwargs, as torch's modules take them
            want = data.pop("dtype")
            if want is not None and not isinstance(want, DType):
                raise self.err(node, f"nn.{cls}: dtype must be a torch.dtype (torch.float32), not {_kind(want)}")
            if want is not None and want.name != self.dtype:
                raise self.err(node, f"nn.{cls}(dtype={want.name}) in a {self.dtype} program is not "
                                     "traced: set the default dtype instead (torch.set_default_dtype at the top, or the "
                                     "spec's \"dtype\")")
        if cls == "MultiheadAttention":
            data.setdefault("batch_first", False)  # torch's default: (L, N, E)
        if ("size_average" in data or "reduce" in data) and "reduction" in d.schema.model_fields:
            # nn.MSELoss(size_average=False) (2017's tutorials): torch's legacy_get_string, with its warning
            size_average, reduce = (True if data.get(k) is None else bool(data.get(k)) for k in ("size_average", "reduce"))
            data.pop("size_average", None), data.pop("reduce", None)
            data["reduction"] = "none" if not reduce else "mean" if size_average else "sum"
            self.res.notes.append(f"line {node.lineno}: size_average and reduce are deprecated in torch: "  # type: ignore[attr-defined]
                                  f"reduction='{data['reduction']}'")
        if lazy:
            size = d.positional()[0]
            if size in data:
                raise self.err(node, f"nn.{cls} takes no {size}: its first call reads it off its input")
            self.configured(d, cls, data | {size: 1}, node, params=False)  # its other arguments checked now
            return ModuleInst(d, None, lazy=data)
        cfg, event = self.configured(d, cls, data, node)
        if event is not None:
            self.stream.events.append(event)
        inst = ModuleInst(d, cfg, event=event)
        if getattr(self, "module_activation", False):  # activation=nn.GELU(): torch's deepcopy of it differs
            self.module_activation = False
            self.module_activations.add(id(inst))
        return inst

    def from_pretrained(self, node: ast.Call) -> ModuleInst:
        """nn.Embedding.from_pretrained(embeddings, freeze=True, padding_idx=None, ...) (GloVe vectors): an nn.Embedding
        whose weight is a Parameter of those values (torch draws no init for it; requires_grad is `not freeze`)."""
        names = ("embeddings", "freeze", "padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if len(node.args) > len(names) or set(given) - set(names) or "embeddings" not in given:
            raise self.err(node, f"nn.Embedding.from_pretrained takes {', '.join(names)}")
        src = self.expr(given["embeddings"])  # evaluated once, as Python does
        if not isinstance(src, T) or len(self.shape(src)) != 2:
            raise self.err(node, "Embeddings parameter is expected to be 2-dimensional (torch raises this)")
        freeze = bool(self.const(given["freeze"])) if "freeze" in given else True
        rows, cols = self.shape(src)
        made = ast.copy_location(ast.Call(
            func=ast.Attribute(value=ast.Name(id="nn", ctx=ast.Load()), attr="Embedding", ctx=ast.Load()),
            args=[ast.Constant(rows), ast.Constant(cols)],
            keywords=[ast.keyword(arg=k, value=v) for k, v in given.items() if k not in ("embeddings", "freeze")]), node)
        m = self.construct("Embedding", made)
        if m.event in self.stream.events:
            self.stream.events.remove(m.event)  # (its weight is the embeddings', not drawn)
        self.ensure_path(m, self.stmt_name if node is self.stmt_expr and self.stmt_name and not self.depth else None)
        weight = T(m.params["weight"])
        hidden = f"pretrained#{node.lineno}.{node.col_offset}"
        self.scope[hidden] = src
        try:
            self.write(weight, ast.copy_location(ast.Name(id=hidden, ctx=ast.Load()), node), node)  # type: ignore[attr-defined]
        finally:
            del self.scope[hidden]
        self.builder.leaves[weight.name].init = f"nn.Embedding.from_pretrained (line {node.lineno})"
        if freeze:
            self.requires_grad(weight, False, node)  # type: ignore[attr-defined]
        return m

    def configured(self, d: LayerDef, cls: str, data: dict[str, Any], node: ast.AST, params: bool = True) -> tuple[Any, Event | None]:
        """A module's config from its constructor's arguments and (with `params`) the event that draws its parameters
        (none drawn yet); a refusal naming the argument torch would complain of."""
        try:
            cfg = d.schema.model_validate(data)
            return cfg, param_event(d, cfg, self.dtype) if params else None
        except ValueError as e:
            errors = getattr(e, "errors", None)
            msg = "; ".join(argument_error(x) for x in errors()) if callable(errors) else str(e)
            raise self.err(node, f"nn.{cls}: {msg}") from None

    def initialize(self, m: ModuleInst, x: str, node: ast.Call) -> None:
        """A lazy module's first call (torch's initialize_parameters): the size it reads off input `x` completes its
        config, and its parameters are drawn now, in the program's order of draws."""
        assert m.layer is not None and m.lazy is not None and m.path is not None
        d, cls = m.layer, m.kind
        try:
            size = lazy_size(d.module or "", self.builder.shapes[x])
        except ValueError as e:
            raise self.err(node, f"{m.path} (nn.{cls}): {e}") from None
        cfg, _ = self.configured(d, cls, m.lazy | {d.positional()[0]: size}, node, params=False)
        if d.module.startswith("Conv") and size % cfg.groups:  # torch's words
            raise self.err(node, f"{m.path} (nn.{cls}): in_channels ({size}, from its input) must be divisible by groups")
        cfg, event = self.configured(d, cls, m.lazy | {d.positional()[0]: size}, node)
        if event is not None:
            self.stream.events.append(event)
        m.cfg, m.event, m.lazy = cfg, event, None
        m.params = add_params(d, cfg, m.path, self.dtype, event, self.builder, ("program",))

    def activation_arg(self, a: ast.expr, cls: str) -> str:
        """A transformer layer's activation: 'relu' / 'gelu', or the function or module that computes it (F.gelu,
        torch.relu, nn.GELU()), as torch's layer calls it."""
        v = self.expr(a)
        if isinstance(v, str):
            return v
        path = v.path if isinstance(v, ClassRef) else f"nn.{v.kind}" if isinstance(v, ModuleInst) else None
        known = {"F.relu": "relu", "torch.relu": "relu", "F.gelu": "gelu", "nn.ReLU": "relu", "nn.GELU": "gelu"}
        if path not in known or isinstance(v, ModuleInst) and getattr(v.cfg, "approximate", "none") != "none":
            raise self.err(a, f"nn.{cls}: activation is 'relu', 'gelu' or their function or module (F.gelu, nn.ReLU()), "
                              f"not {self.src(a)[:40]}")
        if isinstance(v, ModuleInst) and cls == "Transformer":
            raise self.err(a, "nn.Transformer deep-copies its decoder layer, and torch's copy of a TransformerDecoderLayer "
                              "whose activation is a module runs F.relu instead (its __setstate__): pass activation='gelu' "
                              "or F.gelu")
        if isinstance(v, ModuleInst):
            self.module_activation = True
        return known[path]

    def container(self, cls: str, node: ast.Call) -> ModuleInst:
        """nn.Sequential(a, b, *rest) / nn.ModuleList([a, b]): modules made now, each used once. A module object of
        the program's own classes made among the arguments is named for its place ('model.blocks.0')."""
        if node.keywords or cls == "ModuleList" and len(node.args) > 1:
            raise self.err(node, f"nn.{cls} takes modules as positional arguments" if cls == "Sequential"
                           else "nn.ModuleList takes one list of modules")
        base = self.target if node is self.stmt_expr else None  # the path the statement will give it
        children: list[Any] = []
        if cls == "Sequential" and len(node.args) == 1 and not isinstance(node.args[0], ast.Starred):
            first = self.element(node.args[0], base, 0)
            if isinstance(first, dict):  # nn.Sequential(OrderedDict([("conv1", nn.Conv2d(...)), ...])): named children
                self.check_new(list(first.values()), "nn.Sequential", node)
                if not all(isinstance(k, str) for k in first):
                    raise self.err(node, "nn.Sequential's names are strings")
                return ModuleInst(None, None, children=list(first.values()), container=cls, keys=list(first))
            self.check_new([first], f"nn.{cls}", node)
            return ModuleInst(None, None, children=[first], container=cls)
        for a in node.args:
            if isinstance(a, ast.Starred) or cls == "ModuleList":
                children.extend(self.elements(a.value if isinstance(a, ast.Starred) else a, base, len(children)))
            else:
                children.append(self.element(a, base, len(children)))
        self.check_new(children, f"nn.{cls}", node)
        return ModuleInst(None, None, children=children, container=cls)

    def check_new(self, items: list[Value], what: str, node: ast.AST) -> None:
        """A container takes modules: new ones, named for their place, or ones named already (`nn.Sequential(*list(
        resnet.children())[:-1])`: they keep their names and parameters, as the same objects do in torch)."""
        for c in items:
            if not isinstance(c, (ModuleInst, Instance)):
                raise self.err(node, f"{what} takes modules (nn.Linear(...), ...), not {_kind(c)}")

    def container_set(self, m: ModuleInst, key: Any, value: ast.expr, stmt: ast.stmt) -> None:
        """model.classifier[6] = nn.Linear(4096, 10), self.layers[2] = Block(), heads["out"] = ...: the slot's module
        replaced. The new one is named for the slot (model.classifier.6.weight) once the old one proves unused, as
        an attribute's replacement is (Finish.take_place)."""
        if m.path is None:
            self.ensure_path(m, None)
        keys = m.keys if m.keys is not None else [str(i) for i in range(len(m.children))]
        k = keys.index(key) if isinstance(key, str) and key in keys else key if isinstance(key, int) and not isinstance(
            key, bool) and -len(keys) <= key < len(keys) else None
        if k is None and m.container == "ModuleDict" and m.layer is None and isinstance(key, str) and m.keys is not None:
            v = self.element(value, None, None)  # `self.model["layer_%d" % n] = nn.Sequential(...)` (MelGAN): a new key
            self.check_new([v], "ModuleDict item", stmt)
            m.keys.append(key)
            m.children.append(v)
            if isinstance(v, ModuleInst):
                self.ensure_path(v, f"{m.path}.{key}")
            else:
                self.finalize(v, f"{m.path}.{key}")  # type: ignore[attr-defined]
            return
        if k is None:
            raise self.err(stmt, f"{m.kind} '{m.path}' has no item {key!r} (it has {len(keys)})")
        k %= len(keys)
        path, old = f"{m.path}.{keys[k]}", m.children[k]
        v = self.element(value, None, None)
        self.check_new([v], f"{m.kind} item", stmt)
        if isinstance(old, ModuleInst) and old.path is not None and old.params or isinstance(old, Instance):
            place = self.free_path(path)  # type: ignore[attr-defined]
            self.replaced.append((old.path, place))  # type: ignore[attr-defined]
            path = place
        elif isinstance(old, ModuleInst) and old.path is not None:
            self.instance_paths.discard(old.path)
        m.children[k] = v
        if isinstance(v, ModuleInst):
            self.ensure_path(v, path)
        else:
            self.finalize(v, path)  # type: ignore[attr-defined]

    def module_dict(self, node: ast.Call) -> ModuleInst:
        """nn.ModuleDict({'a': ..., 'b': ...}) / nn.ModuleDict(dict(a=..., b=...)): modules by name, each named for
        its key under the dict's path ('model.transformer.wte')."""
        base = self.target if node is self.stmt_expr else None
        if node.keywords or len(node.args) > 1:
            raise self.err(node, "nn.ModuleDict takes one dict of modules")
        arg = node.args[0] if node.args else ast.Dict(keys=[], values=[])
        if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id == "dict" and not arg.args:
            pairs = [(k.arg, k.value) for k in arg.keywords]
        elif isinstance(arg, ast.Dict):
            pairs = [(self.const(k) if k is not None else None, v) for k, v in zip(arg.keys, arg.values, strict=True)]
        elif isinstance(arg, (ast.List, ast.Tuple)) and all(isinstance(e, (ast.List, ast.Tuple)) and len(e.elts) == 2
                                                            for e in arg.elts):
            pairs = [(self.const(e.elts[0]), e.elts[1]) for e in arg.elts]  # type: ignore[attr-defined]  # the docs' pairs
        else:  # a dict comprehension (its modules named base.key as they are made), or a dict built before
            made = self.comprehension(arg, base, 0) if isinstance(arg, ast.DictComp) else self.expr(arg)
            if not isinstance(made, dict):
                raise self.err(arg, f"nn.ModuleDict takes a dict of modules, not {_kind(made)}")
            pairs = list(made.items())
        keys: list[str] = []
        children: list[Any] = []
        for key, value in pairs:
            if not isinstance(key, str):
                raise self.err(arg, "nn.ModuleDict's keys are strings")
            keys.append(key)
            children.append(self.element(value, base and f"{base}.{key}", None) if isinstance(value, ast.AST) else value)
        self.check_new(children, "nn.ModuleDict", arg)
        return ModuleInst(None, None, children=children, container="ModuleDict", keys=keys)

    def container_add(self, m: ModuleInst, how: str, call: ast.Call) -> None:
        """ml.append(module) / ml.extend(modules): the container grows; a named container names the new items."""
        if call.keywords:
            raise self.err(call, f"{m.kind}.{how} takes its module(s) positionally")
        base = m.path
        new = self.elements(call.args[0], base, len(m.children)) if how == "extend" else [self.element(call.args[0], base, len(m.children))]
        self.check_new(new, f"{m.kind}.{how}", call)
        for k, c in enumerate(new, start=len(m.children)):
            m.children.append(c)
            if base is not None and isinstance(c, ModuleInst):
                self.ensure_path(c, f"{base}.{k}")
            elif base is not None:
                self.finalize(c, f"{base}.{k}")

    def add_module(self, m: ModuleInst, call: ast.Call) -> None:
        """seq.add_module("conv1", nn.Conv2d(...)) (torchvision's DenseNet): a child by name, named for it."""
        if len(call.args) != 2 or call.keywords or not isinstance(name := self.const(call.args[0]), str):
            raise self.err(call, "add_module takes a name (a string) and a module")
        if m.container == "ModuleList" or m.keys is not None and name in m.keys:
            raise self.err(call, f"add_module('{name}', ...) on {m.kind}: only new names on an nn.Sequential/ModuleDict")
        item = self.element(call.args[1], m.path and f"{m.path}.{name}", None)
        self.check_new([item], f"{m.kind}.add_module", call)
        m.keys = [*(m.keys if m.keys is not None else [str(i) for i in range(len(m.children))]), name]
        m.children.append(item)
        if m.path is not None and isinstance(item, ModuleInst):
            self.ensure_path(item, f"{m.path}.{name}")
        elif m.path is not None:
            self.finalize(item, f"{m.path}.{name}")  # type: ignore[attr-defined]

    def element(self, node: ast.expr, base: str | None, k: int | None) -> Value:
        """One item of a container, made under its path hint (base.k; k None: base itself)."""
        self.path_hint = (base if k is None else f"{base}.{k}") if base else None
        try:
            return self.expr(node)
        finally:
            self.path_hint = None

    def elements(self, node: ast.expr, base: str | None, offset: int) -> list[Value]:
        """The items of a list written out, a comprehension or a list value, each made under its path hint."""
        if isinstance(node, (ast.List, ast.Tuple)):
            items: list[Value] = []
            for e in node.elts:  # `[*base, nn.Linear(4, 2)]`: a list's items spread
                items += self.elements(e.value, base, offset + len(items)) if isinstance(e, ast.Starred) else \
                    [self.element(e, base, offset + len(items))]
            return items
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return self.comprehension(node, base, offset)
        v = self.expr(node)
        if isinstance(v, ModuleInst) and v.container in ("ModuleList", "Sequential"):
            return list(v.children)  # DLRM's `nn.Sequential(*layers)` of an nn.ModuleList: the same modules
        if not isinstance(v, (list, tuple)):
            raise self.err(node, f"'{self.src(node)[:60]}' must be a list of modules, not {_kind(v)}")
        return list(v)

    def ensure_path(self, m: ModuleInst, name: str | None) -> None:
        """Give a module its path (its variable, 'net.0' inside a Sequential) and its parameter leaves."""
        if m.path is not None:
            if m.stand_in and name is not None and name not in self.instance_paths:
                self.renames[m.path] = name  # type: ignore[attr-defined]  # its tensors take the place's name at the end
                self.instance_paths.add(name)
                m.path, m.stand_in = name, False
            return
        m.stand_in = not name  # (a function's local, or its class's name: the place it ends up names it)
        path = name or m.hint or self.fresh(m.kind)
        base, k = path, 1
        while path in self.instance_paths:  # `layer = layers[i]` in a loop: each module its own path
            k += 1
            path = f"{base}#{k}"
        self.instance_paths.add(path)
        m.path = path
        if m.layer is not None and m.lazy is None:  # (a lazy module's parameters come with its first call)
            event = None if m.copy_of == "construction" else m.event  # (the original's event names the original's)
            m.params = add_params(m.layer, m.cfg, m.path, self.dtype, event, self.builder, ("program",), m.norms)
            if m.copy_of is not None:
                self.copied_params(m)  # type: ignore[attr-defined]
        for i, child in enumerate(m.children):
            if isinstance(child, ModuleInst):
                self.ensure_path(child, f"{m.path}.{m.child_name(i)}")
            else:  # a module object of the program's classes: named for its place unless something named it already
                self.finalize(child, f"{m.path}.{m.child_name(i)}")

    def module_cast(self, m: ModuleInst, how: str, node: ast.Call) -> ModuleInst:
        """model.float() / model.double() / model.to(dtype): only to the spec's dtype (the default dtype)."""
        want = {"float": "float32", "double": "float64"}.get(how)
        if how == "to":
            dts = [v for v in (self.const(a) for a in node.args) if isinstance(v, DType)]
            want = dts[0].name if dts else self.dtype
        if want != self.dtype:
            raise self.err(node, f"modules are built in the spec's dtype ({self.dtype}); set \"dtype\": \"{want}\" in the spec")
        return m

    def module_call(self, m: ModuleInst, node: ast.Call, hooks: bool = True) -> Value:
        """Apply a module: its layer's nodes (a Sequential: each child's, named by the child's path); its forward hooks
        too, unless called through `.forward(x)` (torch runs them on `m(x)` only)."""
        self.ensure_path(m, None)
        if hooks and self.has_hooks(m) and m.layer is not None and m.layer.type in (  # type: ignore[attr-defined]
                "self_attention", *TRANSFORMER_CALLS, "rnn", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell", "embedding_bag"):
            raise self.err(node, f"a forward hook on {m.path} ({m.kind}) is not traced: gradtrace traces hooks on the other "
                                 "modules (every module's output is a node of the result anyway)")
        if m.layer is not None and m.layer.type == "self_attention":
            return self.attention_call(m, node)
        if m.layer is not None and m.layer.type in TRANSFORMER_CALLS:
            return self.transformer_call(m, node)
        if m.layer is not None and m.layer.type in ("rnn", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell"):
            return self.recurrent_call(m, node)
        if m.layer is not None and m.layer.type == "embedding_bag":
            return self.embedding_bag_call(m, node)
        if node.keywords:
            raise self.err(node, f"{m.kind}(...) takes tensors positionally")
        inputs = [self.tensor(a) for a in node.args]
        if hooks and self.has_hooks(m):  # type: ignore[attr-defined]
            hooked = self.pre_hooks(m, list(inputs), node)  # type: ignore[attr-defined]
            if not all(isinstance(i, T) for i in hooked):
                raise self.err(node, f"a forward pre-hook of {m.path} returned {_kind(hooked)}: it takes tensors")
            inputs = hooked
        first = m.children[0] if m.layer is None and m.container == "Sequential" and m.children else m
        inplace = isinstance(first, ModuleInst) and getattr(first.cfg, "inplace", False) and len(inputs) == 1
        if inplace:  # nn.ReLU(inplace=True)(h): h itself changes, as for h.relu_() (every name of h sees it)
            var = self.src(node.args[0])[:40]
            self.check_in_place(inputs[0], var, f"{first.kind}(inplace=True)", f"{first.kind}() without inplace", node)  # type: ignore[attr-defined]
        by_stmt = node is self.stmt_expr and bool(self.stmt_name)
        out_name = self.name_for(node) if by_stmt else self.fresh(f"{m.path}.out")
        hooked = hooks and self.has_hooks(m)  # type: ignore[attr-defined]
        wanted, out_name = (out_name, self.fresh(f"{m.path}.out")) if hooked and self.replaces_output(m) else (None, out_name)  # type: ignore[attr-defined]
        out = T(self.apply_module(m, [i.name for i in inputs], out_name, node))
        if inplace and first is m and out != inputs[0]:
            self.changed_in_place(inputs[0], out, var, node)  # type: ignore[attr-defined]
        elif inplace and first is not m:
            raise self.err(node, f"{m.path} starts with {first.kind}(inplace=True), which changes its input in place: "
                                 "gradtrace follows that for the module called on its own, not inside an nn.Sequential")
        if hooked:
            got = self.forward_hooks(m, list(inputs), out, node)  # type: ignore[attr-defined]
            return self.named_output(got, out.name, wanted) if wanted else got  # type: ignore[attr-defined, no-any-return]
        if not inplace and inputs and out == inputs[0] and by_stmt:  # an identity (nn.Dropout(0.0), in eval mode):
            self.stmt_name = out_name  # `y = self.drop(self.fc(x))` names the fc's output y, a temporary made here
            return self.adopt(out, node)  # type: ignore[attr-defined, no-any-return]
        return out

    def synced_params(self, m: ModuleInst, node: ast.Call) -> dict[str, str]:
        """m.params with its parts' current parameters (transformer.synced), a refusal where their modes differ."""
        try:
            return synced(m)
        except ValueError as e:
            raise self.err(node, str(e)) from None

    def attention_call(self, m: ModuleInst, node: ast.Call) -> Value:
        """attn(q, k, v, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True,
        is_causal=False): nn.MultiheadAttention's (output, weights), as torch computes them (weights None when not
        asked for); `out, w = attn(x, x, x)` names both."""
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")
        given = self.named_args(node, names, "nn.MultiheadAttention", 3)
        q, k, v = (self.tensor(given[a]) for a in ("query", "key", "value"))
        masks = Masks(**{opt: self.mask_arg(given, opt, m.kind) for opt in ("attn_mask", "key_padding_mask")},
                      **{opt: bool(self.const(given[opt])) for opt in ("need_weights", "average_attn_weights", "is_causal") if opt in given})
        if "need_weights" not in given:
            masks.need_weights = True
        pair = node is self.stmt_expr and len(self.stmt_names) == 2
        s = self.stmt_expr  # `t1 = self.self_attn(x, x, x)[0]`: the output is t1
        first = isinstance(s, ast.Subscript) and s.value is node and isinstance(s.slice, ast.Constant) and s.slice.value == 0
        out = self.stmt_names[0] if pair else self.name_for(s) if first and self.stmt_name else self.fresh(f"{m.path}.out")
        call = Call(m.cfg, self.synced_params(m, node), [q.name], out, m.path, m.training)  # type: ignore[arg-type]
        call.options = {"tensors": [q.name, k.name, v.name], "masks": masks}
        if pair and masks.need_weights:
            call.states["weights"] = self.stmt_names[1]
        y = T(m.layer.emit(self.emitter(node, out), call))  # type: ignore[union-attr]
        return (y, T(call.states["weights"]) if masks.need_weights else None)

    def embedding_bag_call(self, m: ModuleInst, node: ast.Call) -> T:
        """bag(input, offsets=None, per_sample_weights=None): nn.EmbeddingBag's forward (the torchtext tutorial's
        `self.embedding(text, offsets)`)."""
        given = self.named_args(node, ("input", "offsets", "per_sample_weights"), "nn.EmbeddingBag", 1)
        vals = {k: self.expr(v) for k, v in given.items()}
        for k, v in vals.items():
            if not (isinstance(v, T) or v is None and k != "input"):
                raise self.err(given[k], f"nn.EmbeddingBag: {k} is a tensor{'' if k == 'input' else ' or None'}, not {_kind(v)}")
        out = self.name_for(node) if node is self.stmt_expr and self.stmt_name else self.fresh(f"{m.path}.out")
        call = Call(m.cfg, m.params, [vals["input"].name], out, m.path, m.training)  # type: ignore[union-attr]
        call.options = {k: v.name for k, v in vals.items() if k != "input" and isinstance(v, T)}
        return T(m.layer.emit(self.emitter(node, out), call))  # type: ignore[union-attr]

    def transformer_call(self, m: ModuleInst, node: ast.Call) -> Value:
        """layer(src, src_mask, ...), encoder(src, mask, ...), decoder layers and decoders (tgt, memory, ...), and
        nn.Transformer (src, tgt, ...): torch's arguments, masks and causal hints (None: detected as torch's stacks
        detect a causal mask); a stack's norm after its layers."""
        names, tensors, attentions = TRANSFORMER_CALLS[m.layer.type]  # type: ignore[union-attr]
        given = self.named_args(node, names, f"nn.{m.kind}", len(tensors))
        xs = [self.tensor(given[t]) for t in tensors]
        options: dict[str, Any] = {}
        for key, (mask, pad, causal, default) in attentions.items():
            masks = Masks(attn_mask=self.mask_arg(given, mask, m.kind), key_padding_mask=self.mask_arg(given, pad, m.kind))
            hint = self.const(given[causal]) if causal in given else default
            if hint is None:  # torch's _detect_is_causal_mask on the sequence the mask is for
                seq = xs[1 if key == "masks" and len(xs) == 2 and m.layer.type == "transformer" else 0]  # type: ignore[union-attr]
                shape = self.shape(seq)
                hint = masks.attn_mask is not None and self.is_causal_mask(
                    masks.attn_mask, shape[1 if m.cfg.batch_first and len(shape) == 3 else 0])
            masks.is_causal = bool(hint)
            options[key] = masks
        if m.layer.type == "transformer_encoder" and options["masks"].key_padding_mask and self.nested_fast_path(m, xs[0]):  # type: ignore[union-attr]
            raise self.err(node, "nn.TransformerEncoder in eval mode with src_key_padding_mask and nothing requiring grad "
                                 "(torch.no_grad(), or a frozen encoder and input) runs torch's nested-tensor fast path "
                                 "(its padded positions come out 0), which gradtrace does not trace: trace it with "
                                 "gradients, or pass enable_nested_tensor=False")
        norm = m.children[0] if m.children else None
        out = self.fresh(f"{m.path}.out") if norm is not None else self.name_for(node)
        call = Call(m.cfg, self.synced_params(m, node), [x.name for x in xs], out, m.path, m.training)  # type: ignore[arg-type]
        call.options = options
        y = m.layer.emit(self.emitter(node, out), call)  # type: ignore[union-attr]
        if norm is not None:
            y = self.apply_module(norm, [y], self.name_for(node), node, f"{norm.path}({y})")
        return T(y)

    def nested_fast_path(self, m: ModuleInst, x: T) -> bool:
        """Whether torch's TransformerEncoder would take its nested-tensor fast path (eval, no grad - under
        no_grad, or nothing it takes requires grad: a frozen encoder -, batch_first 3-d input, a layer the fast path
        takes, enable_nested_tensor not turned off)."""
        c, grad = m.cfg, self.builder.grad
        no_grad = not self.builder.grad_enabled or not (grad[x.name] or any(grad[p] for p in m.params.values()))
        return (not m.training and no_grad and c.batch_first and len(self.shape(x)) == 3
                and c.enable_nested_tensor and not c.norm_first and c.bias and c.nhead % 2 == 0)

    def named_args(self, node: ast.Call, names: tuple[str, ...], what: str, required: int) -> dict[str, ast.expr]:
        """A call's arguments by parameter name (torch's order), each at most once, the first `required` given."""
        given: dict[str, ast.expr] = dict(zip(names, node.args, strict=False))
        for k in node.keywords:
            if k.arg not in names or k.arg in given:
                raise self.err(node, f"{what} is called with ({', '.join(names)})")
            given[k.arg] = k.value
        if len(node.args) > len(names) or not set(names[:required]) <= set(given):
            raise self.err(node, f"{what} is called with ({', '.join(names)})")
        return given

    def mask_arg(self, given: dict[str, ast.expr], name: str, what: str) -> str | None:
        """A mask argument: a tensor's name, or None."""
        if name not in given:
            return None
        v = self.expr(given[name])
        if v is None:
            return None
        if not isinstance(v, T):
            raise self.err(given[name], f"nn.{what}: {name} is a tensor or None, not {_kind(v)}")
        return v.name

    def is_causal_mask(self, mask: str, length: int) -> bool:
        """torch's _detect_is_causal_mask: the mask equals generate_square_subsequent_mask(length) (its value known
        here: a leaf made from constants); otherwise not causal, as torch finds for any other mask."""
        leaf = self.builder.leaves.get(mask)
        value = getattr(leaf, "value", None)
        if value is None or tuple(value.shape) != (length, length):
            return False
        return bool(np.array_equal(value, np.triu(np.full((length, length), -np.inf), 1)))

    def emitter(self, node: ast.Call, out: str) -> Emitter:
        """An Emitter at the call's position, the output showing the call's text."""
        return Emitter(self.builder, self.stream, self.dtype, loc=("program",), line=node.lineno, col=node.col_offset + 1,
                       texts={out: self.src(node)})

    def transformer_stack(self, cls: str, node: ast.Call) -> ModuleInst:
        """nn.TransformerEncoder(encoder_layer, num_layers, norm=None, ...) / nn.TransformerDecoder(decoder_layer, ...):
        num_layers deep copies of the layer (the same starting parameters, as torch's deepcopy gives: the layer's own
        construction draws them once), then `norm`."""
        first = "encoder_layer" if cls == "TransformerEncoder" else "decoder_layer"
        extra = ("enable_nested_tensor", "mask_check") if cls == "TransformerEncoder" else ()
        given = self.named_args(node, (first, "num_layers", "norm", *extra), f"nn.{cls}", 2)
        d = BY_MODULE[cls]
        kind = d.type + "_layer"
        el = self.expr(given[first])
        if not isinstance(el, ModuleInst) or el.layer is None or el.layer.type != kind:
            raise self.err(node, f"nn.{cls} takes an nn.{cls}Layer, not {_kind(el)}")
        n = self.const(given["num_layers"])
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 64:
            raise self.err(given["num_layers"], f"nn.{cls}: num_layers is an int from 1 to 64, got {n!r}")
        norm = self.expr(given["norm"]) if "norm" in given else None
        if norm is not None and not isinstance(norm, ModuleInst):
            raise self.err(given["norm"], f"nn.{cls}: norm is a module (nn.LayerNorm(d_model)) or None, not {_kind(norm)}")
        if el.event is None or el.event.args["cls"] != el.layer.module:
            raise self.err(node, f"nn.{cls}: this nn.{cls}Layer is already copied into another nn.{cls}; make one layer "
                                 "per stack")
        flags: dict[str, object] = {k: bool(self.const(given[k])) for k in extra if k in given}  # enable_nested_tensor, ...
        if cls == "TransformerDecoder" and id(el) in self.module_activations:
            flags["activation"] = "relu"  # what torch's copies run: TransformerDecoderLayer.__setstate__ sets F.relu
            if el.cfg.activation != "relu":
                self.res.notes.append(
                    f"line {node.lineno}: nn.TransformerDecoder deep-copies its layer, and torch's copy of a "
                    "TransformerDecoderLayer whose activation is a module (nn.GELU()) runs F.relu instead (its "
                    "__setstate__ sets the attribute F.relu, which shadows the module): the stack's layers apply "
                    "relu, as in torch; pass activation='gelu' or F.gelu for GELU")
        cfg = d.schema.model_validate(el.cfg.model_dump() | {"type": d.type, "num_layers": n} | flags)
        tied = synced(el, modes=False)
        if len(set(tied.values())) < len(tied):
            raise self.err(node, f"nn.{cls}: the layer's parameters are tied (one Parameter in two places); its copies "
                                 "would keep the tie, which gradtrace does not trace: tie them in each copy")
        if el.path is not None:  # the layer has its own parameters (maybe changed since): the copies take their values now
            event = Event("copies", None, {"sources": dict(el.params), "params": {}})
            self.stream.events.append(event)
        else:  # the layer's construction event builds the stack too (torch copies, it does not draw again)
            el.event.args.update(cls=cls, kwargs=d.ctor_kwargs(cfg))
            event = el.event
        return ModuleInst(d, cfg, event=event, children=[norm] if norm is not None else [],
                          keys=["norm"] if norm is not None else None)

    def recurrent_call(self, m: ModuleInst, node: ast.Call) -> Value:
        """lstm(x), lstm(x, (h0, c0)), gru(x, h0): (output, (h_n, c_n)) from an LSTM, (output, h_n) from an RNN or GRU,
        as torch returns them; `out, (h, c) = lstm(x)` names the three nodes. Cells: `h, c = lstm_cell(x, (h, c))`
        gives (h', c'), `h = gru_cell(x, h)` gives h'."""
        kind = m.layer.type  # type: ignore[union-attr]
        lstm = kind in ("lstm", "lstm_cell")
        if kind.endswith("_cell"):
            return self.cell_call(m, node, lstm)
        x, states = self.recurrent_args(m, node, lstm, "(h0, c0)" if lstm else "h0")
        want = 3 if lstm else 2
        named = node is self.stmt_expr and len(self.stmt_names) == want
        first = node is self.stmt_expr and len(self.stmt_names) >= 2  # `out, hidden = lstm(x)`: out names the output
        out = self.stmt_names[0] if named or first else self.fresh(f"{m.path}.out")
        e = Emitter(self.builder, self.stream, self.dtype, loc=("program",), line=node.lineno, col=node.col_offset + 1,
                    texts={out: self.src(node)})
        call = Call(m.cfg, m.params, [x.name, *states], out, m.path, m.training)  # type: ignore[arg-type]
        if named:  # `out, (h, c) = lstm(x)`: h_n and c_n take the names they are bound to
            call.states = dict(zip(("h_n", "c_n"), self.stmt_names[1:], strict=False))
        y = T(m.layer.emit(e, call))  # type: ignore[union-attr]
        if lstm:  # torch's fused LSTM (mkldnn on the CPU) keeps its output for backward: a change of it fails there
            self.builder.saved_by_torch[y.name] = f"{m.path} (nn.LSTM)"
        h, c = T(call.states["h_n"]), T(call.states.get("c_n", ""))
        return (y, (h, c)) if lstm else (y, h)

    def recurrent_args(self, m: ModuleInst, node: ast.Call, lstm: bool, state: str) -> tuple[T, list[str]]:
        """A recurrent module's (input, state) arguments: the input, and the state's tensors (none: zeros)."""
        if node.keywords or not 1 <= len(node.args) <= 2:
            raise self.err(node, f"nn.{m.kind} is called with (input, {state}) or (input)")
        x = self.tensor(node.args[0])
        given = self.expr(node.args[1]) if len(node.args) == 2 else None
        if given is None:
            return x, []
        items = list(given) if lstm and isinstance(given, (tuple, list)) else [given]
        if len(items) != (2 if lstm else 1) or not all(isinstance(t, T) for t in items):
            raise self.err(node.args[1], f"nn.{m.kind}'s second argument is {'the tuple ' if lstm else ''}{state}"
                                         f"{'' if lstm else ', a tensor'}, not {_kind(given)}")
        return x, [t.name for t in items]

    def cell_call(self, m: ModuleInst, node: ast.Call, lstm: bool) -> Value:
        """One step of nn.RNNCell / GRUCell (h') or LSTMCell ((h', c')), named by the statement's targets."""
        x, states = self.recurrent_args(m, node, lstm, "(h, c)" if lstm else "h")
        mine = node is self.stmt_expr
        names = self.stmt_names if mine and len(self.stmt_names) == (2 if lstm else 1) else []
        out = names[0] if names else self.fresh(f"{m.path}.h")
        e = Emitter(self.builder, self.stream, self.dtype, loc=("program",), line=node.lineno, col=node.col_offset + 1,
                    texts={out: self.src(node)})
        call = Call(m.cfg, m.params, [x.name, *states], out, m.path, m.training)  # type: ignore[arg-type]
        call.states = {"c_n": names[1] if len(names) == 2 else self.fresh(f"{m.path}.c")} if lstm else {}
        if mine:
            self.stmt_name = None
        h = T(m.layer.emit(e, call))  # type: ignore[union-attr]
        return (h, T(call.states["c_n"])) if lstm else h

    def apply_module(self, m: ModuleInst, inputs: list[str], out: str, node: ast.Call, text: str | None = None) -> str:
        """Add the module's nodes for these inputs; `text` is what the output's expression shows."""
        assert m.path is not None
        if m.layer is None:
            if m.container != "Sequential":
                raise self.err(node, f"nn.{m.container} '{m.path}' is not callable: loop over it or pick a module "
                                     "(for layer in self.layers: x = layer(x))")
            x = inputs
            for k, child in enumerate(m.children):
                assert child.path is not None
                if isinstance(child, Instance):
                    if self.has_hooks(child):  # type: ignore[attr-defined]
                        x = [i.name for i in self.pre_hooks(child, [T(i) for i in x], node)]  # type: ignore[attr-defined]
                    inputs_k = x
                    if child.torch_module is not None and "forward" not in child.cls.methods:  # a torch layer's subclass
                        last_name = out if k == len(m.children) - 1 and not self.has_hooks(child) else None  # type: ignore[attr-defined]
                        x = [self.torch_layer_on(child, x, last_name or self.fresh(f"{child.path}.out"), node)]  # type: ignore[attr-defined]
                    else:
                        x = [self.forward_on(child, x, node)]
                    if self.has_hooks(child):  # type: ignore[attr-defined]
                        x = [self.hooked_tensor(child, inputs_k, x[0], node)]  # type: ignore[attr-defined]
                    if k == len(m.children) - 1 and x[0] != out and self.builder.rename_last(x[0], out):
                        x = [out]  # `y = seq(x)` ending in a module of the program's own: its result is y
                    continue
                last = k == len(m.children) - 1
                hooked = self.has_hooks(child)  # type: ignore[attr-defined]
                renamed = last and hooked and self.replaces_output(child)  # type: ignore[attr-defined]
                name = out if last and not renamed else self.fresh(f"{child.path}.out")
                if hooked:
                    x = [i.name for i in self.pre_hooks(child, [T(i) for i in x], node)]  # type: ignore[attr-defined]
                res = self.apply_module(child, x, name, node, f"{child.path}({x[0]})")
                if hooked:
                    own, res = res, self.hooked_tensor(child, x, res, node)  # type: ignore[attr-defined]
                    if renamed:
                        res = self.named_output(T(res), own, out).name  # type: ignore[attr-defined]
                if k and getattr(child.cfg, "inplace", False) and res != x[0]:
                    self.mark_written(res, x[0])  # type: ignore[attr-defined]  # nn.ReLU(True) changes what came before
                x = [res]
            return x[0]
        d = m.layer
        if m.lazy is not None and inputs:
            self.initialize(m, inputs[0], node)
        if len(inputs) < d.min_inputs or (d.max_inputs is not None and len(inputs) > d.max_inputs):
            raise self.err(node, f"{m.kind} takes {d.min_inputs if d.max_inputs == d.min_inputs else 'more'} tensor input(s), got {len(inputs)}")
        e = Emitter(self.builder, self.stream, self.dtype, loc=("program",), line=node.lineno, col=node.col_offset + 1,
                    texts={out: text or self.src(node)})
        return d.emit(e, Call(m.cfg, self.normed_params(m, node) if m.norms else m.params, inputs, out, m.path, m.training))  # type: ignore[attr-defined]

    def dropout(self, node: ast.Call, kind: str = "dropout") -> T:
        """F.dropout(x, p=0.5, training=True) (F.dropout1d/2d/3d: whole channels): training mode draws torch's mask;
        otherwise x itself."""
        names = ("input", "p", "training", "inplace")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if set(given) - set(names) or "input" not in given:
            raise self.err(node, "F.dropout takes (input, p=0.5, training=True, inplace=False)")
        x = self.tensor(given["input"])
        p = self.const(given["p"]) if "p" in given else 0.5
        training = bool(self.const(given["training"])) if "training" in given else True
        if not is_number(p) or not 0 <= p <= 1:
            raise self.err(node, f"dropout probability has to be between 0 and 1, but got {p!r}")
        inplace = bool(self.const(given["inplace"])) if "inplace" in given else False
        if inplace:  # F.dropout(h, inplace=True): h itself is dropped, every name of it sees it
            self.check_in_place(x, self.src(given["input"])[:40], "F.dropout(..., inplace=True)", "F.dropout(...)", node)  # type: ignore[attr-defined]
        name = self.name_for(node)
        e = Emitter(self.builder, self.stream, self.dtype, loc=("program",), line=node.lineno, col=node.col_offset + 1)
        cfg = DropoutLayer(type="dropout", p=float(p)) if kind == "dropout" else ChannelDropoutLayer(type=kind, p=float(p))  # type: ignore[arg-type]
        out = T(LAYERS[kind].emit(e, Call(cfg, {}, [x.name], name, name, training)))
        if inplace and out != x:
            self.changed_in_place(x, out, self.src(given["input"])[:40], node)  # type: ignore[attr-defined]
        return out

    def module_attribute(self, m: ModuleInst, node: ast.Attribute) -> Value:
        """conv.weight, fc.bias (parameters), net[0] children, conv.in_channels (config)."""
        self.ensure_path(m, None)
        if node.attr in m.params:
            return T(m.params[node.attr])
        if node.attr in m.norms:  # conv.weight under weight_norm: torch's g * v / ||v||, computed from them now
            return T(self.normed_params(m, node)[node.attr])  # type: ignore[attr-defined]
        if m.lazy is not None:  # torch's UninitializedParameter / a size not known yet
            if node.attr in m.lazy:
                return m.lazy[node.attr]
            raise self.err(node, f"{m.path}.{node.attr}: an nn.{m.kind} makes its parameters and sizes at its first "
                                 f"call (they are uninitialized before it): call {m.path} on an input first")
        if m.keys is not None and node.attr in m.keys:  # a ModuleDict's child: self.transformer.wte
            return m.children[m.keys.index(node.attr)]
        if m.layer is not None and node.attr in ("weight", "bias"):
            return None  # Linear(bias=False).bias is None in torch (the config's `bias` is the constructor's flag)
        if m.layer is not None and m.layer.type.startswith("batch_norm") and node.attr in ("running_mean", "running_var"):
            return self.running_stat(m, node)
        for name, part in parts(m):  # layer.linear1, attn.out_proj, enc.layers: torch's submodules (layer.dropout
            if name == node.attr:    # is the nn.Dropout, not the constructor's float, as in torch)
                return part
        if node.attr == "training":  # m.training: its mode (model.train() / model.eval())
            return m.training
        if m.cfg is not None and node.attr in type(m.cfg).model_fields:
            return torch_attribute(m.kind, node.attr, m.cfg)
        raise self.err(node, f"{m.kind} has no parameter or attribute '{node.attr}'")

    def running_stat(self, m: ModuleInst, node: ast.Attribute) -> T:
        """bn.running_mean / bn.running_var: what the module's last training call left (a node), else a fresh
        module's buffer (zeros / ones)."""
        e = Emitter(self.builder, self.stream, self.dtype, loc=("program",), line=node.lineno, col=node.col_offset + 1)
        name = f"{m.path}.{node.attr}"
        latest = e.latest(name)
        if latest is not None:
            return T(latest)
        if not m.cfg.track_running_stats:  # type: ignore[union-attr]
            return None  # type: ignore[return-value]  # torch's running_mean is None then
        fill = 0.0 if node.attr == "running_mean" else 1.0
        return T(e.buffer(name, m.cfg.num_features, fill, dtype=self.dtype))  # type: ignore[union-attr]



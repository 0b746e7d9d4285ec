"""nn.utils.weight_norm and its parametrizations form (the TCN's `weight_norm(nn.Conv1d(...))`): the module holds g
and v for a weight as torch registers them (services.compiler.layers.add_params), and each call computes the weight
from them first, as torch's forward pre-hook (or parametrization) does."""

from __future__ import annotations

import ast

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.layers import weight_norm_names
from services.compiler.values import ModuleInst, T

WEIGHT_NORMED = frozenset({"Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"})
"""The layers nn.utils.weight_norm is traced on."""


class WeightNorms(ExpressionCompiler):
    """weight_norm(module) calls and the weights they recompute (ProgramCompiler runs them)."""

    def weight_norm(self, path: str, node: ast.Call) -> ModuleInst:
        """nn.utils.weight_norm(module, name='weight', dim=0) and its parametrizations form (the TCN's
        `weight_norm(nn.Conv1d(...))`): the module, holding g and v for that weight from now on (ModuleInst.norms)."""
        names = ("module", "name", "dim")
        given = dict(zip(names, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if len(node.args) > 3 or set(given) - set(names) or "module" not in given:
            raise self.err(node, f"{path} takes (module, name='weight', dim=0)")
        m = self.expr(given["module"])
        attr = self.const(given["name"]) if "name" in given else "weight"
        dim = self.const(given["dim"]) if "dim" in given else 0
        if not isinstance(m, ModuleInst) or m.layer is None or m.layer.module not in WEIGHT_NORMED:
            raise self.err(node, f"{path} of {_kind(m)} is not traced: it traces nn.{', nn.'.join(sorted(WEIGHT_NORMED))}")
        if m.path is not None or m.lazy is not None or m.copy_of is not None:
            raise self.err(node, f"{path}: apply it where the module is made (`weight_norm(nn.{m.kind}(...))`), before "
                                 "anything names or uses it")
        shapes = dict(m.layer.params(m.cfg))
        if attr not in shapes or attr in m.norms:
            raise self.err(node, f"{path}: nn.{m.kind} has no parameter {attr!r}" + (" left to normalise" if attr in m.norms else ""))
        if dim is None:
            dim = -1  # torch: the norm of the whole tensor
        if not isinstance(dim, int) or isinstance(dim, bool) or not -len(shapes[attr]) <= dim < len(shapes[attr]):
            raise self.err(node, f"{path}: dim {dim!r} is out of range for {attr} of shape {list(shapes[attr])}")
        m.norms[attr] = (dim % len(shapes[attr]) if dim != -1 else -1, "parametrizations" if "parametrizations" in path else "weight_norm")
        return m

    def normed_params(self, m: ModuleInst, node: ast.AST) -> dict[str, str]:
        """m.params with each weight under weight_norm computed from its g and v, as torch's forward pre-hook (or
        parametrization) computes it before each call: a weight_norm node, `conv.weight` (`conv.weight#2`, ...)."""
        params = dict(m.params)
        for attr, (dim, style) in m.norms.items():
            g, v = (m.params[k] for k in weight_norm_names(attr, style))
            params[attr] = self.emit("weight_norm", [T(v), T(g)], {"dim": dim}, node, name=self.fresh(f"{m.path}.{attr}")).name  # type: ignore[arg-type]
            self.recomputed.add(params[attr])
        return params

"""Python's `random` module, run while compiling: after `random.seed(s)` its draws are the numbers Python draws
(Mersenne Twister, as CPython's), so `random.shuffle(idx)` (d2l's data_iter), `random.random() < eps` (an
epsilon-greedy action, teacher forcing) and `random.choice(xs)` take the values they take when the program runs.
Without a seed Python draws from the OS's entropy: the run is not reproducible, and such a draw is refused."""

from __future__ import annotations

import ast
import random
from typing import Any

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.values import Value, is_number

DRAWS = {"random", "uniform", "randint", "randrange", "choice", "shuffle", "sample", "gauss", "normalvariate", "getrandbits"}
"""random's functions run here (on the program's Random, seeded by its random.seed)."""


class PythonRandom(ExpressionCompiler):
    """random.seed / random.random / random.shuffle ... on one random.Random the program seeds."""

    py_random: random.Random | None = None

    def python_random(self, path: str, node: ast.Call) -> Value:
        """A call of random.<fn>: the seed (None), or a draw; refused for another function or a draw before a seed."""
        fn = path.removeprefix("random.")
        args = [self.expr(a) for a in node.args]
        kwargs = {k.arg: self.expr(k.value) for k in node.keywords if k.arg is not None}
        if len(kwargs) != len(node.keywords):
            raise self.err(node, f"{path}: **kwargs are not traced here")
        if fn == "seed":
            if len(args) > 1 or kwargs or args and not (is_number(args[0]) or isinstance(args[0], str) or args[0] is None):
                raise self.err(node, "random.seed takes one number or string")
            if not args or args[0] is None:
                raise self.err(node, "random.seed() without a number seeds from the OS's entropy, so the program gives "
                                     "other numbers on every run: give one (random.seed(0))")
            self.py_random = random.Random(args[0])
            return None
        if fn not in DRAWS:
            raise self.err(node, f"{path} is not traced (gradtrace runs random.{', random.'.join(sorted(DRAWS))})")
        if self.py_random is None:
            raise self.err(node, f"{path}(...) before random.seed(...): Python draws from the OS's entropy, so the program "
                                 "gives other numbers on every run; seed it (random.seed(0)) to trace it")
        for v in [*args, *kwargs.values()]:
            if not _plain(v):
                raise self.err(node, f"{path} takes numbers and lists here, not {_kind(v)}")
        try:
            return getattr(self.py_random, fn)(*args, **kwargs)  # (on the program's own lists: shuffle changes them)
        except (TypeError, ValueError, IndexError) as e:
            raise self.err(node, f"{path}: {e}") from None


def _plain(v: Any) -> bool:
    """Numbers, strings, None and lists or tuples of anything (shuffle and choice move items, never look into them)."""
    return v is None or is_number(v) or isinstance(v, (str, bool, list, tuple, range))

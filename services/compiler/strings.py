"""Python's string operations on compile-time constants, bounded: f-strings, `%` formatting, concatenation and the
methods code calls on names ('denseblock%d' % i, f"layer{i}", name.endswith("c_proj.weight")). Nothing is run but
these functions on values the program wrote down, and no width or length can blow up."""

from __future__ import annotations

import re
import string
from typing import Any

MAX_CHARS = 10_000
"""The longest string a program may build."""
SPEC = re.compile(r"^(.?[<>=^])?[+\- ]?z?#?0?(\d{1,3})?[,_]?(\.\d{1,3})?[bcdeEfFgGnosxX%]?$")
"""A format spec (`:.2f`, `>8`, `03d`) with a width and precision of at most 3 digits."""
PERCENT = re.compile(r"%(\([^)]*\))?[#0\- +]*(\d{1,3}|\*)?(\.(\d{1,3}|\*))?[hlL]?[diouxXeEfFgGcrsa%]")
PERCENT_ANY = re.compile(r"%(\([^)]*\))?[#0\- +]*\*?\d*(\.\*?\d*)?[hlL]?.?")
STR_METHODS = {"endswith", "startswith", "split", "rsplit", "replace", "lower", "upper", "strip", "lstrip", "rstrip",
               "join", "count", "find", "index", "isdigit", "isalpha", "isspace", "title", "capitalize", "zfill", "format"}
"""Methods of strings a program may call: pure, and bounded by MAX_CHARS."""


def checked(s: str) -> str:
    """`s`, if it is not longer than MAX_CHARS."""
    if len(s) > MAX_CHARS:
        raise ValueError(f"a string of {len(s)} characters is over the limit of {MAX_CHARS}")
    return s


def format_value(v: Any, spec: str, conversion: int = -1) -> str:
    """One `{v!r:spec}` of an f-string: of a number, a string, a bool or None (a dtype or a shape would print
    gradtrace's objects, not torch's `torch.float32` / `torch.Size([2, 3])`)."""
    if not (v is None or isinstance(v, (int, float, str, bool))):
        raise ValueError(f"formatting {type(v).__name__} values is not traced: gradtrace formats numbers and strings")
    if conversion != -1 and chr(conversion) not in "sra":
        raise ValueError(f"unknown conversion specifier {chr(conversion)}")
    if conversion != -1:
        v = {"s": str, "r": repr, "a": ascii}[chr(conversion)](v)
    if not SPEC.match(spec):
        raise ValueError(f"the format spec '{spec}' is not supported (widths and precisions of up to 3 digits)")
    return checked(format(v, spec))


def str_format(fmt: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """`'attention_{}'.format(i)` (pyGAT's add_module loop): plain fields only ('{}', '{0}', '{name}', with a spec and a
    conversion); an attribute or index in a field (`{0.__class__}`) is refused, nothing is looked up."""
    parts: list[str] = []
    auto: int | None = 0  # the next automatic field; None once a field is numbered
    for literal, field, spec, conversion in string.Formatter().parse(fmt):
        parts.append(literal)
        if field is None:
            continue
        if spec and "{" in spec:
            raise ValueError("a field inside a format spec is not supported")
        if field == "" and auto is None or field.isdigit() and auto:
            raise ValueError("cannot switch between automatic field numbering and manual field specification")
        if field == "":
            if auto >= len(args):
                raise ValueError(f"format needs more than {len(args)} argument(s)")
            v, auto = args[auto], auto + 1
        elif field.isdigit() and int(field) < len(args):
            v, auto = args[int(field)], None
        elif field.isidentifier() and field in kwargs:
            v = kwargs[field]
        else:
            raise ValueError(f"the field '{{{field}}}' is not supported here (plain fields: {{}}, {{0}}, {{name}})")
        parts.append(format_value(v, spec or "", ord(conversion) if conversion else -1))
        if sum(map(len, parts)) > MAX_CHARS:  # (per field: 30,000 fields of a long string must not build GBs first)
            raise ValueError(f"the formatted string is over the limit of {MAX_CHARS} characters")
    return checked("".join(parts))


def percent(fmt: str, args: Any) -> str:
    """`fmt % args`, each directive's width and precision at most 3 digits."""
    bad = [m.group(0) for m in PERCENT_ANY.finditer(fmt) if not PERCENT.fullmatch(m.group(0))]
    if bad:
        raise ValueError(f"the % directive '{bad[0]}' is not supported (widths and precisions of up to 3 digits)")
    return checked(fmt % (tuple(args) if isinstance(args, list) else args))


def method(s: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """s.name(*args, **kwargs) for the methods in STR_METHODS."""
    if name not in STR_METHODS:
        raise ValueError(f"the string method '{name}' is not supported here")
    if name == "format":
        return str_format(s, args, kwargs)
    if name in ("endswith", "startswith"):
        args = [tuple(a) if isinstance(a, list) else a for a in args]
    if name == "zfill" and args and isinstance(args[0], int) and args[0] > MAX_CHARS:
        raise ValueError(f"zfill({args[0]}) is over the limit of {MAX_CHARS} characters")
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        checked("x" * (len(s) + (s.count(args[0]) if args[0] else len(s) + 1) * max(len(args[1]) - len(args[0]), 0)))
    if name == "join" and args and isinstance(args[0], (list, tuple)):
        checked("x" * min(sum(len(str(a)) for a in args[0]) + len(s) * len(args[0]), MAX_CHARS + 1))
    out = getattr(s, name)(*args, **kwargs)
    return checked(out) if isinstance(out, str) else out

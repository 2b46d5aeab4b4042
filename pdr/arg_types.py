"""Config values checked against the type annotations of the constructors they are passed to.

``check_argument(value, annotation, default)`` returns the value to pass (a YAML string such as
``"1e-3"`` becomes a float where a float is expected) or raises ``ArgumentTypeError`` with what was
expected. Understood: int, float, bool, str, list, tuple, dict, ``Sequence[...]``, ``tuple[...]``,
``X | None`` / ``Optional``, unions and ``Literal``; any other annotation (or none) accepts every value.
"""
from __future__ import annotations

import collections.abc as cabc
import inspect
import types
import typing
from typing import Any


class ArgumentTypeError(ValueError):
    """A value does not fit its annotation; the message says what was expected."""


_UNCHECKED = object()
_SEQUENCES = (list, tuple, cabc.Sequence, typing.Sequence)
_MAPPINGS = (dict, cabc.Mapping, typing.Mapping)


def _describe(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if annotation in _SEQUENCES or origin in _SEQUENCES:
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
        item = args[0] if args else None
        return "a list" + (f" of {_describe(item)}" if item is not None and _describe(item) != "anything" else "")
    if annotation in _MAPPINGS or origin in _MAPPINGS:
        return "a mapping"
    if isinstance(annotation, type) and annotation in (int, float, bool, str):
        return annotation.__name__
    return "anything"


def _convert(value, annotation):
    """``value`` as the annotation wants it, or ``_UNCHECKED`` when it does not fit."""
    if annotation in (inspect.Parameter.empty, Any) or isinstance(annotation, str):
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return value if value is None else _UNCHECKED
    if origin is typing.Literal:
        return value if value in args else _UNCHECKED
    if origin in (typing.Union, types.UnionType):
        for member in args:
            out = _convert(value, member)
            if out is not _UNCHECKED:
                return out
        return _UNCHECKED
    if annotation is bool:
        return value if isinstance(value, bool) else _UNCHECKED
    if annotation is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _UNCHECKED
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                return _UNCHECKED
        return _UNCHECKED
    if annotation is str:
        return value if isinstance(value, str) else _UNCHECKED
    if annotation in _SEQUENCES or origin in _SEQUENCES:
        if not isinstance(value, (list, tuple)):
            return _UNCHECKED
        if not args:
            return value
        if origin is tuple and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return _UNCHECKED
            items = [_convert(v, a) for v, a in zip(value, args)]
        else:
            items = [_convert(v, args[0]) for v in value]
        return _UNCHECKED if any(i is _UNCHECKED for i in items) else type(value)(items)
    if annotation in _MAPPINGS or origin in _MAPPINGS:
        return value if isinstance(value, dict) else _UNCHECKED
    return value  # classes and other annotations: the constructor judges


def check_argument(value, annotation, default=inspect.Parameter.empty):
    """``value`` (converted where the annotation asks for a float) or ArgumentTypeError.

    ``None`` passes when the default is ``None``, whatever the annotation says.
    """
    if value is None and default is None:
        return None
    out = _convert(value, annotation)
    if out is _UNCHECKED:
        example = "" if default in (inspect.Parameter.empty, None) else f" (default: {_plain(default)!r})"
        raise ArgumentTypeError(f"expected {_describe(annotation)}{example}, got {type(value).__name__} {value!r}")
    return out


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def signature(target) -> inspect.Signature:
    """The signature of a class or function with its string annotations evaluated where possible."""
    try:
        return inspect.signature(target, eval_str=True)
    except Exception:  # an annotation that does not evaluate: keep it as a string (unchecked)
        return inspect.signature(target)

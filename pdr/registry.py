"""Named registries filled by decorators, in the style of timm's ``create_model``.

    from pdr.registry import BACKBONES

    @BACKBONES.register("my_net")
    class MyNet(Backbone): ...

    model = BACKBONES.build("my_net", in_shape=(10, 1, 64, 64), out_frames=10)

Third-party code registers its own entries the same way; the config key ``imports``
(a list of module names) makes the tools import such modules before building.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable, Iterator

from .arg_types import ArgumentTypeError, check_argument, signature
from .errors import ConfigError, RegistryError

def closest_hint(key: str, candidates, cutoff: float = 0.6) -> str:
    """`` Did you mean 'x'?`` for the closest candidate (case-insensitive matches first), or ""."""
    candidates = list(candidates)
    same_case = [c for c in candidates if c.lower() == key.lower()]
    close = same_case or difflib.get_close_matches(key, candidates, n=1, cutoff=cutoff)
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry:
    """A mapping from names to classes or factory functions of one kind.

    ``package``: the package whose import registers the built-in entries (its ``__init__`` imports its
    modules); imported on the first lookup, so that ``import pdr.registry`` stays cheap and free of
    import cycles.
    """

    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package
        self._entries: dict[str, Callable[..., Any]] = {}
        self._builtins_loaded = False

    def _load_builtins(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            if self.package:
                importlib.import_module(self.package)

    def register(self, name: str | None = None, *, force: bool = False):
        """Decorator that adds a class or function under ``name`` (default: its lower-cased name)."""

        def decorator(obj):
            key = name or obj.__name__.lower()
            if key in self._entries and self._entries[key] is not obj and not force:
                raise RegistryError(
                    f"{self.kind} {key!r} is already registered by {self._entries[key].__module__}; "
                    "pass force=True to replace it"
                )
            self._entries[key] = obj
            return obj

        return decorator

    def register_preset(self, name: str, target: Callable[..., Any], *, doc: str, defaults: dict | None = None,
                        fixed: dict | None = None, omit: tuple[str, ...] = ()) -> Callable[..., Any]:
        """Register ``target`` under ``name`` with other defaults (TAU: SimVP with ``alpha = 0.1``).

        The entry's signature is ``target``'s with ``defaults`` and ``fixed`` as the new defaults and
        without the arguments in ``omit``, so that config keys are checked as for ``target``. A ``fixed``
        argument may be given (configs written for the original set it) but only with its preset value,
        strings in any case; another value is a ValueError naming the argument. Returns the factory.
        """
        defaults, fixed = dict(defaults or {}), dict(fixed or {})
        params = signature(target).parameters
        unknown = sorted((set(defaults) | set(fixed) | set(omit)) - set(params))
        if unknown:
            raise RegistryError(f"{self.kind} preset {name!r}: {target.__name__} has no argument {', '.join(unknown)}")
        new = {**defaults, **fixed}
        sig = inspect.Signature([p.replace(default=new[n]) if n in new else p
                                 for n, p in params.items() if n not in omit])
        var_keyword = next((n for n, p in params.items() if p.kind is p.VAR_KEYWORD), None)

        def build(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            for key, value in fixed.items():
                given = bound.arguments[key]
                if given != value and not (isinstance(given, str) and str(value).lower() == given.lower()):
                    base = next((k for k, v in self._entries.items() if v is target), target.__name__)
                    raise ValueError(f"{key}: {self.kind} {name!r} is {self.kind} {base!r} with {key} {value!r}, "
                                     f"got {given!r}; use {self.kind} {base!r} for another {key}")
                bound.arguments[key] = value
            kwargs = bound.arguments.pop(var_keyword, {}) if var_keyword else {}
            return target(**bound.arguments, **kwargs)  # by name: omitted arguments shift the positions

        build.__signature__ = sig
        build.__name__ = build.__qualname__ = name
        build.__module__, build.__doc__ = target.__module__, doc
        build.size_multiple = getattr(target, "size_multiple", None)  # the frame sizes it accepts (pdr.model.padding)
        return self.register(name)(build)

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable[..., Any]:
        self._load_builtins()
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        names = self.names()
        hint = closest_hint(str(name), names, cutoff=0.5)
        return f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(names) or '(none)'}"

    def build(self, name: str, /, **kwargs):
        return self.get(name)(**kwargs)

    def check_kwargs(self, name: str, kwargs: dict, where: str, provided: tuple[str, ...] = ()) -> dict:
        """Raise ConfigError naming ``where.key`` for keyword arguments the entry does not take, or whose
        values do not fit the entry's type annotations (``pdr.arg_types``). Returns ``kwargs`` with values
        converted where the annotation asks (``"1e-3"`` -> 1e-3 for a float). The error's ``key`` attribute
        is the dotted key at fault.

        ``provided``: arguments that pdr passes itself, left out of the list shown to the user.
        """
        params = signature(self.get(name)).parameters
        accepted = self.argument_names(name, provided)
        out = {}
        for key, value in kwargs.items():
            if accepted is not None and key not in accepted:
                raise _key_error(f"{where}.{key}", f"unknown argument of {self.kind} {name!r}.{closest_hint(key, accepted)} "
                                                   f"Accepted: {', '.join(accepted)}" if accepted else
                                 f"{self.kind} {name!r} takes no arguments")
            if key not in params:  # taken by **kwargs
                out[key] = value
                continue
            try:
                out[key] = check_argument(value, params[key].annotation, params[key].default)
            except ArgumentTypeError as err:
                raise _key_error(f"{where}.{key}", f"{self.kind} {name!r} {err}") from None
        return out

    def argument_names(self, name: str, provided: tuple[str, ...] = ()) -> list[str] | None:
        """The keyword arguments the entry ``name`` takes, less ``provided``; None when it takes any (``**kwargs``)."""
        params = signature(self.get(name)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
        return [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in provided]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _key_error(key: str, message: str) -> ConfigError:
    """``key: message`` as a ConfigError that keeps the dotted key (``.key``) for the caller to say where it was set."""
    exc = ConfigError(f"{key}: {message}")
    exc.key = key
    return exc


BACKBONES = Registry("backbone", package="pdr.backbones")
ADAPTERS = Registry("adapter", package="pdr.adapters")
DATASETS = Registry("dataset", package="pdr.data")
LOSSES = Registry("loss", package="pdr.losses")


def import_modules(modules, where: str = "imports") -> None:
    """Import user modules that register their own entries (the config's ``imports`` list)."""
    for module in modules or ():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"{where}: cannot import module {module!r}: {exc}") from exc

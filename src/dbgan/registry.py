"""Small name -> object registries that import their modules lazily.

Each kind (networks, losses) keeps a table ``name -> "module:attribute"``; the
module is imported only when the name is built, so ``import dbgan`` stays cheap
(the BasicSR idea without importing every module at start-up).
"""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any, Callable

#: Range of an integer argument that no limit table names (wide: it only stops absurd values).
DEFAULT_INT_RANGE = (0, 2**16)


class Registry:
    """A lazily importing table of named constructors.

    Args:
        kind: what the table holds, used in error messages ("network", "loss").
        entries: mapping of name to ``"package.module:Attribute"``.
    """

    def __init__(self, kind: str, entries: dict[str, str], limits: dict[str, tuple[float, float]] | None = None):
        self.kind = kind
        self._entries = dict(entries)
        self._limits = dict(limits or {})

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise KeyError(
                f"unknown {self.kind} '{name}'; valid names: {', '.join(self.names())}"
            )
        module_name, attr = self._entries[name].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def check_args(self, name: str, args: dict[str, Any], where: str = "") -> None:
        """Raise ``ValueError`` naming the key if ``args`` has a key the constructor lacks."""
        ctor = self.get(name)
        params = inspect.signature(ctor).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        valid = [k for k, p in params.items() if k != "self"]
        for key in args:
            if key not in params:
                loc = f"{where}." if where else ""
                raise ValueError(
                    f"unknown argument '{loc}{key}' for {self.kind} '{name}'; "
                    f"valid arguments: {', '.join(valid)}"
                )

    def validate_args(self, name: str, args: dict[str, Any], where: str = "") -> None:
        """Check ``args`` against the constructor of ``name`` before building anything.

        Unknown keys, values of the wrong type (from the constructor's annotations: int,
        float, bool, str, optionally None) and numbers outside the registry's limits (or,
        for an unlisted int, :data:`DEFAULT_INT_RANGE`; floats must be finite) raise
        ``ValueError`` naming ``where.key``.
        """
        if not isinstance(args, dict):
            raise ValueError(f"'{where or 'args'}' must be a mapping, got {type(args).__name__}")
        self.check_args(name, args, where)
        params = inspect.signature(self.get(name)).parameters
        loc = f"{where}." if where else ""
        for key, value in args.items():
            param = params.get(key)
            if param is None:
                continue
            ann = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
            kinds = {a.strip() for a in str(ann).split("|")}
            if value is None:
                if "None" in kinds or param.default is None:
                    continue
                raise ValueError(f"'{loc}{key}' must not be null")
            if "int" in kinds and isinstance(value, int) and not isinstance(value, bool):
                low, high = self._limits.get(key, DEFAULT_INT_RANGE)
            elif "float" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise ValueError(f"'{loc}{key}' must be a finite number, got {value!r}")
                low, high = self._limits.get(key, (-math.inf, math.inf))
            elif "bool" in kinds and isinstance(value, bool):
                continue
            elif "str" in kinds and isinstance(value, str):
                if len(value) > 64:
                    raise ValueError(f"'{loc}{key}' is too long ({len(value)} characters)")
                continue
            elif kinds & {"int", "float", "bool", "str"}:
                want = " or ".join(sorted(kinds & {"int", "float", "bool", "str"}))
                raise ValueError(f"'{loc}{key}' must be {want}, got {str(value)[:40]!r}")
            else:
                continue
            if not low <= value <= high:
                raise ValueError(f"'{loc}{key}' must lie in [{low:g}, {high:g}], got {value!r}")

    def build(self, name: str, **kwargs: Any) -> Any:
        self.check_args(name, kwargs)
        return self.get(name)(**kwargs)

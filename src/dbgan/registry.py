"""Small name -> object registries that import their modules lazily.

Each kind (networks, losses) keeps a table ``name -> "module:attribute"``; the
module is imported only when the name is built, so ``import dbgan`` stays cheap
(the BasicSR idea without importing every module at start-up).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable


class Registry:
    """A lazily importing table of named constructors.

    Args:
        kind: what the table holds, used in error messages ("network", "loss").
        entries: mapping of name to ``"package.module:Attribute"``.
    """

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

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

    def build(self, name: str, **kwargs: Any) -> Any:
        self.check_args(name, kwargs)
        return self.get(name)(**kwargs)

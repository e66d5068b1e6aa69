"""Typed loading: YAML presets with ``extends``, dotted overrides, coercion to the dataclasses, unknown keys rejected."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from dbgan.config import _short, Config, ConfigError
from dbgan.config.validation import validate


# --------------------------------------------------------------------------- typed loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (lightly coerced)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {_short(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping of {tp.__name__} keys, got {_short(value)}")
        return from_dict(tp, value, prefix=key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {_short(value)}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {_short(value)}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{key}' must be bool (true/false), got {_short(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"'{key}' must be int, got {_short(value)}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int beyond the float range
                number = math.inf
        elif isinstance(value, str):  # PyYAML reads "1e-4" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"'{key}' must be float, got {_short(value)}")
        if not math.isfinite(number):
            raise ConfigError(f"'{key}' must be a finite number, got {_short(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"'{key}' must be str, got {_short(value)}")
    raise ConfigError(f"'{key}': unsupported type {tp!r}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'; valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    out = dict(base)
    for key, value in update.items():
        base_val = out.get(key)
        renamed = isinstance(value, dict) and isinstance(base_val, dict) and (
            "name" in value and value["name"] != base_val.get("name")
        )  # a different architecture starts from its own defaults, not the old args
        if isinstance(value, dict) and isinstance(base_val, dict) and not renamed:
            out[key] = _merge(base_val, value)
        else:
            out[key] = value
    return out


class _YamlLoader(yaml.SafeLoader):
    """YAML's safe loader that also reads ``1e-6`` / ``2E+3`` as floats.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-6``), so ``lr=1e-6``
    would otherwise arrive as the string ``"1e-6"``.
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


#: Most YAML nodes a config may expand to (aliases counted as often as they are used):
#: a real config has a few hundred; "billion laughs" anchors expand to billions.
MAX_YAML_NODES = 100_000
#: Largest config file read.
MAX_CONFIG_BYTES = 1 << 20


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of ``root`` with every alias expanded, stopping with an error past ``limit``."""
    memo: dict[int, int] = {}
    stack: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in stack:
            raise ConfigError("YAML alias refers to itself (a recursive structure is not a config)")
        stack.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                raise ConfigError(
                    f"YAML expands to more than {limit} nodes (nested anchors and aliases?); "
                    "refusing to load it"
                )
        stack.discard(key)
        memo[key] = total
        return total

    return size(root)


class _BudgetLoader(_YamlLoader):
    """:class:`_YamlLoader` that refuses documents whose aliases expand past :data:`MAX_YAML_NODES`."""

    def construct_document(self, node):  # noqa: D102 - PyYAML hook
        _expanded_size(node, MAX_YAML_NODES)
        return super().construct_document(node)


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_BudgetLoader)
    except RecursionError:
        raise ConfigError("YAML is nested too deeply") from None
    except ConfigError:
        raise
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"a YAML value cannot be read ({str(exc)[:100]})") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, never the offending text (it may be a file's contents)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a", "b", "c"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({_yaml_problem(exc)})") from None
    except ConfigError as exc:
        raise ConfigError(f"override '{key}': {exc}") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is not None and not isinstance(nxt, dict):
                # do not silently replace a wrongly written section by the override
                where = ".".join(path[: i + 1])
                raise ConfigError(f"'{where}' must be a mapping, got {nxt!r} (while applying override '{text}')")
            if nxt is None:
                nxt = {}
                node[part] = nxt
            node = nxt
        node[path[-1]] = value
    return out


def _defaults_dict() -> dict[str, Any]:
    return dataclasses.asdict(Config())


def build_config(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """Typed, validated config from a raw mapping plus dotted overrides."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a YAML mapping at the top level")
    raw = apply_overrides(raw, overrides or [])
    # validate keys/types of what the user wrote, then merge over the defaults
    from_dict(Config, raw)
    cfg = from_dict(Config, _merge(_defaults_dict(), raw))
    validate(cfg)
    return cfg


PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or the name of a bundled preset (``tiny``, ``seed``, ``paper``, ``demo``)."""
    p = Path(path)
    if p.is_file():
        return p
    cand = PRESETS_DIR / (p.name if p.suffix == ".yaml" else f"{p.name}.yaml")
    if cand.is_file() and (len(p.parts) == 1 or p.parent.name == "configs"):
        return cand
    raise ConfigError(f"config file not found: {path} (bundled presets: {', '.join(preset_names())})")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file or bundled preset (``extends: other.yaml`` is supported) with overrides."""
    path = resolve_config_path(path)
    raw = _read_yaml(path)
    try:
        return build_config(raw, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{path}: cannot read config file ({why})") from None
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping at the top level")
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent.strip():
            raise ConfigError(f"{path}: 'extends' must be the file name of a config (a string), got {_short(parent)}")
        if Path(parent).suffix.lower() not in (".yaml", ".yml"):
            raise ConfigError(f"{path}: 'extends' must name a .yaml or .yml file, got {parent!r}")
        parent_path = (path.parent / parent).resolve()
        if parent_path in _seen:
            raise ConfigError(f"{path}: 'extends' forms a cycle through {parent_path}")
        if not parent_path.is_file():
            raise ConfigError(f"{path}: 'extends' names {parent_path}, which is not a file")
        raw = _merge(_read_yaml(parent_path, _seen + (parent_path,)), raw)
    return raw


def save_config(cfg: Config, path: str | Path, command: str | None = None) -> None:
    from dbgan.atomic import atomic_write_text

    text = ""
    if command:
        text += f"# launched with: {command}\n"
    text += yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write_text(Path(path), text)

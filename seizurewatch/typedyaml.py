"""Load YAML into frozen dataclasses, validating types and rejecting unknown keys.

Every error names the file, the dotted key path and what was expected, e.g.
``config/bedside.yaml: decision.k: expected an integer, got 'three'``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from seizurewatch.errors import ConfigError

T = TypeVar("T")


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last one silently: a
    second ``threshold:`` pasted below the first would win without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *base`` then a key of base: an override, as YAML means it
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base class refuses it with its own message
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first + 1}); keep one",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """Read a YAML file, turning I/O and syntax errors into ConfigError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None


def load_typed(cls: type[T], data: Any, source: str, path: str = "") -> T:
    """Build dataclass ``cls`` from plain YAML data; ``source`` names the file in errors."""
    return typing.cast(T, _convert(cls, data, source, path))


def _where(source: str, path: str) -> str:
    return f"{source}: {path or '(top level)'}"


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin in (tuple, list):
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({getattr(tp, '__name__', tp)})"
    return str(tp)


def _convert(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, source, path)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, path)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{_where(source, path)}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{_where(source, path)}: expected {_describe(tp)}, got {value!r}")
    if origin in (tuple, list):
        (item_tp, *rest) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{_where(source, path)}: expected {_describe(tp)}, got {value!r}")
        if rest and rest[0] is not Ellipsis:  # fixed-length tuple
            if len(value) != len(get_args(tp)):
                raise ConfigError(
                    f"{_where(source, path)}: expected {len(get_args(tp))} items, got {len(value)}"
                )
            return tuple(
                _convert(t, v, source, f"{path}[{i}]") for i, (t, v) in enumerate(zip(get_args(tp), value))
            )
        items = [_convert(item_tp, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(source, path)}: expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp)
        return {
            _convert(key_tp, k, source, f"{path}.{k}"): _convert(val_tp, v, source, f"{path}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # YAML's .nan / .inf: never a meaningful setting
                raise ConfigError(f"{_where(source, path)}: expected a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError(f"{_where(source, path)}: expected {_describe(tp)}, got {value!r}")


def _convert_dataclass(cls: type, value: Any, source: str, path: str) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(source, path)}: expected {_describe(cls)}, got {value!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        key = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"{source}: {key}: unknown key (known keys here: {known})")
    kwargs = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], source, sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: {sub}: required key is missing (expected {_describe(hints[name])})")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{_where(source, path)}: {exc}") from None


def load_typed_file(cls: type[T], path: str | Path) -> tuple[T, Path]:
    """A YAML file holding one mapping -> dataclass ``cls``, and the folder its relative paths start from."""
    p = Path(path)
    data = read_yaml(p)
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return load_typed(cls, data, str(p)), p.resolve().parent


def resolve_path(base: Path, s: str) -> str:
    """``s`` as an absolute path, relative ones taken from ``base``; ``~`` expanded; symbolic links kept
    (a text signal's sidecar sits beside the link the user named, not beside its target)."""
    q = Path(s).expanduser()
    return str(q if q.is_absolute() else os.path.abspath(base / q))

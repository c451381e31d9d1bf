"""Load YAML into frozen dataclasses, validating types and rejecting unknown keys.

Every error names the file, the dotted key path and what was expected, e.g.
``config/bedside.yaml: decision.k: expected an integer, got 'three'``.

A field typed ``FilePath`` (``Annotated[str, PathField()]``) is a file path: a relative one is taken
from the folder of the file it was written in, ``~`` is expanded, symbolic links are kept as written
(a text signal's sidecar sits beside the link the user named). Every loader reads its file through
``load_typed_file``, so that rule has one owner: ``resolve_path``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from seizurewatch.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class PathField:
    """Marks a ``str`` field as a file path, resolved against the folder of the file that holds it.
    ``keep``: values that name no file (``":memory:"``); a blank value is left for the field's own check."""

    keep: tuple[str, ...] = ()


FilePath = Annotated[str, PathField()]


@dataclass(frozen=True)
class _Ctx:
    """What a conversion needs besides the value: the file named in errors, the folder relative paths
    start from (None: paths are left as written), and whether unknown keys are refused."""

    source: str
    base: Path | None = None
    strict: bool = True


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


def load_typed(cls: type[T], data: Any, source: str, path: str = "", *, base: Path | None = None,
               strict: bool = True) -> T:
    """Build dataclass ``cls`` from plain YAML (or JSON) data; ``source`` names the file in errors.

    ``base``: the folder ``FilePath`` fields are relative to (None: left as written). ``strict=False``
    ignores keys ``cls`` does not declare (a format other versions extend, e.g. a model's metadata)."""
    return typing.cast(T, _convert(cls, data, _Ctx(source, base, strict), path))


def _where(source: str, path: str) -> str:
    return f"{source}: {path or '(top level)'}"


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return _describe(get_args(tp)[0])
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


def _refuse(tp: Any, value: Any, ctx: _Ctx, path: str) -> ConfigError:
    return ConfigError(f"{_where(ctx.source, path)}: expected {_describe(tp)}, got {value!r}")


def _convert(tp: Any, value: Any, ctx: _Ctx, path: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, ctx, path)
    if origin is Annotated:
        inner, *marks = get_args(tp)
        out = _convert(inner, value, ctx, path)
        for mark in marks:
            if isinstance(mark, PathField) and ctx.base is not None and out.strip() and out not in mark.keep:
                out = resolve_path(ctx.base, out)
        return out
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, ctx, path)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise _refuse(tp, value, ctx, path)
    if origin in (tuple, list):
        return _convert_sequence(tp, value, ctx, path)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(ctx.source, path)}: expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp)
        return {_convert(key_tp, k, ctx, f"{path}.{k}"): _convert(val_tp, v, ctx, f"{path}.{k}")
                for k, v in value.items()}
    return _convert_scalar(tp, value, ctx, path)


def _convert_union(tp: Any, value: Any, ctx: _Ctx, path: str) -> Any:
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, ctx, path)
        except ConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    raise _refuse(tp, value, ctx, path)


def _convert_sequence(tp: Any, value: Any, ctx: _Ctx, path: str) -> Any:
    (item_tp, *rest) = get_args(tp)
    if not isinstance(value, list):
        raise _refuse(tp, value, ctx, path)
    if rest and rest[0] is not Ellipsis:  # fixed-length tuple
        if len(value) != len(get_args(tp)):
            raise ConfigError(f"{_where(ctx.source, path)}: expected {len(get_args(tp))} items, got {len(value)}")
        return tuple(_convert(t, v, ctx, f"{path}[{i}]") for i, (t, v) in enumerate(zip(get_args(tp), value)))
    items = [_convert(item_tp, v, ctx, f"{path}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if get_origin(tp) is tuple else items


def _convert_scalar(tp: Any, value: Any, ctx: _Ctx, path: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # YAML's .nan / .inf: never a meaningful setting
                raise ConfigError(f"{_where(ctx.source, path)}: expected a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise _refuse(tp, value, ctx, path)


def _convert_dataclass(cls: type, value: Any, ctx: _Ctx, path: str) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _refuse(cls, value, ctx, path)
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields]
    if unknown and ctx.strict:
        known = ", ".join(sorted(fields))
        key = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"{ctx.source}: {key}: unknown key (known keys here: {known})")
    kwargs = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], ctx, sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{ctx.source}: {sub}: required key is missing (expected {_describe(hints[name])})")
        elif ctx.base is not None and _default_holds_a_path(hints[name], field):
            # a default path is relative to the file too (outbox.path: "outbox.sqlite3" beside the config),
            # also inside a section the file leaves out
            default = {} if field.default is dataclasses.MISSING else field.default
            kwargs[name] = _convert(hints[name], default, ctx, sub)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{_where(ctx.source, path)}: {exc}") from None


def _default_holds_a_path(tp: Any, field: dataclasses.Field) -> bool:
    """Whether a field left out of the file has a default that names a file: a ``PathField`` string, or a
    section (a dataclass made by its own class) whose fields do."""
    if get_origin(tp) is Annotated:
        return isinstance(field.default, str) and any(isinstance(m, PathField) for m in get_args(tp)[1:])
    if dataclasses.is_dataclass(tp) and isinstance(tp, type) and field.default_factory is tp:
        hints = get_type_hints(tp, include_extras=True)
        return any(_default_holds_a_path(hints[f.name], f) for f in dataclasses.fields(tp) if f.init)
    return False


def load_typed_file(cls: type[T], path: str | Path, section: str | None = None) -> tuple[T, Path]:
    """A YAML file holding one mapping -> dataclass ``cls``, and the folder its relative paths start from
    (the file's own, links in the file's name followed). ``FilePath`` fields come back absolute.

    ``section``: ``cls`` is the mapping under that top-level key (absent: all defaults); the rest of the
    file belongs to someone else and is not looked at."""
    p = Path(path)
    data = read_yaml(p)
    base = p.resolve().parent
    if section is None:
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        return load_typed(cls, data, str(p), base=base), base
    if not isinstance(data, dict) or not isinstance(data.get(section, {}), dict):
        raise ConfigError(f"{p}: expected a mapping with an '{section}:' section")
    return load_typed(cls, data.get(section, {}), str(p), section, base=base), base


def resolve_path(base: Path, s: str) -> str:
    """``s`` as an absolute path, relative ones taken from ``base``; ``~`` expanded; symbolic links kept
    (a text signal's sidecar sits beside the link the user named, not beside its target)."""
    q = Path(s).expanduser()
    return str(q if q.is_absolute() else os.path.abspath(base / q))

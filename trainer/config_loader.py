"""Load nested, typed config dataclasses from YAML plus ``key=value`` overrides.

Every section is a dataclass; this module only converts and checks types. Range
checks live in each section's ``__post_init__``. Errors name the key, the value,
where it came from and what would be accepted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and the fix."""


def require(ok: bool, key: str, value: object, accepted: str) -> None:
    """A section's range check: the error names the key, the value and what is accepted."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is out of range; accepted: {accepted}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(
            "null" if a is type(None) else _type_name(a) for a in typing.get_args(tp)
        )
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str, source: str) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"{source}: {key}={value!r} is not {_type_name(tp)}")

    origin = typing.get_origin(tp)
    variants = _variants(tp)
    if variants:
        if not isinstance(value, dict):
            raise bad()
        return build(
            _pick_variant(variants, value, key, source), value, source=source, prefix=key + "."
        )
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key, source)
            except ConfigError:
                continue
        raise bad()
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad()
        return build(tp, value, source=source, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad()
        (inner, *_) = typing.get_args(tp)
        items = [_convert(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise bad() from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads `name: 2024` as an int; a name is still a name
        raise bad()
    if tp is Any:
        return value
    raise TypeError(f"config field {key} has unsupported type {tp!r}")


def _variants(tp: Any) -> list[type]:
    """The members of a union of config sections told apart by their ``name`` field
    (e.g. one section per game): empty for any other type."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return []
    args = typing.get_args(tp)
    if len(args) < 2 or not all(
        dataclasses.is_dataclass(a) and "name" in {f.name for f in dataclasses.fields(a)}
        for a in args
    ):
        return []
    return list(args)


def _variant_name(cls: type) -> str:
    default = next(f.default for f in dataclasses.fields(cls) if f.name == "name")
    return default.value if isinstance(default, enum.Enum) else str(default)


def _pick_variant(variants: list[type], value: dict, key: str, source: str) -> type:
    """The section whose ``name`` default equals ``value['name']`` (the first if absent)."""
    if "name" not in value:
        return variants[0]
    name = value["name"].value if isinstance(value["name"], enum.Enum) else value["name"]
    for cls in variants:
        if _variant_name(cls) == name:
            return cls
    accepted = ", ".join(repr(_variant_name(c)) for c in variants)
    raise ConfigError(f"{source}: {key}.name={name!r} is not one of {accepted}")


def build(cls: type[T], data: dict[str, Any], *, source: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping, checking keys and types."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in known]
    if unknown:
        where = f"under '{prefix[:-1]}'" if prefix else "at the top level"
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}'; known keys {where}: {', '.join(known)}"
        )
    kwargs = {name: _convert(hints[name], data[name], prefix + name, source) for name in data}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        message = str(err)
        if prefix.endswith("]."):  # a list item: its checks say "interventions[].share"
            message = message.replace(prefix[: prefix.rindex("[")] + "[].", prefix)
        raise ConfigError(f"{source}: {message}") from None
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{source}: section '{prefix[:-1] or cls.__name__}': {err}") from None


def to_dict(config: Any) -> Any:
    """The plain-YAML form of a config tree (enums as values, tuples as lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, enum.Enum):
        return config.value
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'population.size=8'`` -> (['population', 'size'], 8); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(
            f"override {text!r} is not of the form key=value (e.g. population.size=8)"
        )
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        raise ConfigError(
            f"override {text!r}: value is not valid YAML ({_yaml_problem(err)})"
        ) from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override set (sections created as needed)."""
    data = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            if isinstance(node, list):
                node = _list_item(node, part, text)
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, (dict, list)):
                raise ConfigError(
                    f"override {text!r}: '{part}' is a value, not a section with keys"
                )
            node = child
        if isinstance(node, list):
            _list_item(node, path[-1], text)  # checks the index
            node[int(path[-1])] = value
        else:
            node[path[-1]] = value
    return data


def _list_item(items: list, part: str, text: str) -> Any:
    """``items[int(part)]`` for an override such as ``interventions.0.share=0.2``."""
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(
            f"override {text!r}: '{part}' is not an index of the {len(items)}-item list; "
            f"expected 0..{len(items) - 1}"
        )
    return items[int(part)]


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error on one line: the problem and where (its message adds excerpts)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        byte = err.object[err.start : err.start + 1]
        raise ConfigError(
            f"{path}: not a text file (byte {err.start} is {byte!r}, not UTF-8); expected an "
            "experiment YAML file, e.g. configs/naming_game/quickstart.yaml"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if data is None:  # an empty file (or comments only) would run every default silently
        raise ConfigError(
            f"{path} is empty; expected an experiment YAML file, e.g. "
            "configs/naming_game/quickstart.yaml (sections model, population, game, ...)"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def load(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from YAML ``path`` (or defaults when None) with overrides applied."""
    data = read_yaml(path) if path is not None else {}
    overrides = overrides or []
    parsed = [(text, parse_override(text)[0]) for text in overrides]
    merged = apply_overrides(data, overrides)
    # Check each override's key first so the error names the override, not the file.
    for text, keys in parsed:
        _check_key_path(cls, keys, f"override {text!r}", merged)
    source = str(path) if path is not None else "config"
    if overrides:
        source += " (with overrides " + " ".join(overrides) + ")"
    return build(cls, merged, source=source)


def _item(items: Any, index: int) -> Any:
    return items[index] if isinstance(items, list) and 0 <= index < len(items) else None


def _variants_of_section(cls: Any, keys: list[str]) -> bool:
    """Whether the section at ``keys`` is one of several variants (e.g. ``game``)."""
    node = cls
    for key in keys:
        if typing.get_origin(node) is list and key.isdigit():
            node = typing.get_args(node)[0]
            continue
        options = _variants(node) or [node]
        node = next(
            (n for n in options if key in {f.name for f in dataclasses.fields(n)}), options[0]
        )
        node = typing.get_type_hints(node)[key]
    return bool(_variants(node))


def _check_key_path(cls: Any, keys: list[str], source: str, merged: Any = None) -> None:
    """Raise if ``keys`` (an override's dotted key) names no field of ``cls``.

    ``merged`` (the config with every override applied) picks the variant of a section
    with several (the game named by ``game.name``), so that an unknown key's error lists
    that game's keys, not every game's.
    """
    node = cls
    for depth, key in enumerate(keys):
        if typing.get_origin(node) is list and key.isdigit():
            node = typing.get_args(node)[0]  # an item of a list section, by index
            merged = _item(merged, int(key))
            continue
        options = _variants(node) or [node]
        if len(options) > 1 and isinstance(merged, dict):
            # A bad name is reported when the section is built.
            with contextlib.suppress(ConfigError):
                options = [_pick_variant(options, merged, ".".join(keys[:depth]), source)]
        if not all(dataclasses.is_dataclass(n) for n in options):
            raise ConfigError(f"{source}: '{'.'.join(keys[:depth])}' is a value, not a section")
        # A key of any variant passes here; building the chosen variant checks the rest.
        node = next(
            (n for n in options if key in {f.name for f in dataclasses.fields(n)}), options[0]
        )
        hints = typing.get_type_hints(node)
        names = list(
            dict.fromkeys(f.name for n in options for f in dataclasses.fields(n) if f.init)
        )
        if key not in names:
            where = "'" + ".".join(keys[:depth]) + "'" if depth else "the top level"
            if len(options) == 1 and _variants_of_section(cls, keys[:depth]):
                where += f" ({_variant_name(options[0])})"
            raise ConfigError(
                f"{source}: unknown key '{'.'.join(keys[: depth + 1])}'; known keys under {where}: {', '.join(names)}"
            )
        node = hints[key]
        merged = merged.get(key) if isinstance(merged, dict) else None
        if not _variants(node) and typing.get_origin(node) in (typing.Union, types.UnionType):
            node = next((a for a in typing.get_args(node) if dataclasses.is_dataclass(a)), node)

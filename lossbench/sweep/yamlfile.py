"""Reading config YAML strictly: YAML 1.2's core schema, no tags, no key given twice.

PyYAML speaks YAML 1.1, where `yes` is true, `1e-3` is a string and a key given twice
silently keeps its last value. Configs are read as people write them instead: only
true/false are booleans; 1e-3, 3E-4, .5 and .inf are floats; 010 is ten. Every problem
is a ConfigError of one line naming the source and, where there is one, the place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from lossbench.errors import ConfigError
from lossbench.registry import show

_CORE = "tag:yaml.org,2002:"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's core-schema resolvers and no explicit tags."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):  # `!!int 0.1`, `!!python/...`: a config never needs one
            raise _Problem(f"YAML tags such as {tag.replace(_CORE, '!!')} are not allowed", event.start_mark)
        return super().compose_node(parent, index)


_YAML11 = (_CORE + "bool", _CORE + "int", _CORE + "float")
_Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in rules if tag not in _YAML11]
                                   for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag, _rx, _first in (
        ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
        ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                  r"|\.(?:nan|NaN|NAN))$", "-+0123456789."),
):
    _Loader.add_implicit_resolver(_CORE + _tag, re.compile(_rx), list(_first))


def _int12(loader, node):  # YAML 1.2: 010 is ten (1.1 read it as octal eight)
    text = loader.construct_scalar(node)
    return int(text[2:], 8) if text.startswith("0o") else int(text, 16) if text.startswith("0x") else int(text)


_Loader.add_constructor(_CORE + "int", _int12)


class _Problem(Exception):
    def __init__(self, message: str, mark=None):
        super().__init__(message + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""))


def parse_yaml(text: str, source: str) -> Any:
    """One YAML document as Python values; ConfigError naming `source` otherwise."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _no_duplicates(node, "")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _Problem as e:
        raise ConfigError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML{_where(e)}: {_problem(e)}") from None


def _where(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _problem(e: yaml.YAMLError) -> str:
    """The parser's complaint, reworded where a stranger would not recognize the cause."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if "'\\t'" in problem:
        return "a tab where YAML needs spaces (indent with spaces)"
    if "another document" in problem:
        return "a second YAML document ('---'); one config per file"
    if problem == "mapping values are not allowed here":
        return "a 'key: value' where none can be (check the indentation, or quote a value holding ': ')"
    return problem


def _no_duplicates(node, path: str) -> None:
    """A key given twice in one mapping is refused (merge keys `<<` are not keys)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, tuple] = {}
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else None
            at = f"{path}.{k}" if path else str(k)
            if k is not None and k != "<<":
                if k in seen:
                    (first, first_value), here = seen[k], _place(key.start_mark)
                    raise _Problem(f"{at}: given twice in one mapping ({first} and {here}); keep one, got "
                                   f"{_text(first_value)} and {_text(value)}")
                seen[k] = (_place(key.start_mark), value)
            _no_duplicates(value, at)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicates(item, f"{path}[{i}]")


def _place(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _text(node) -> str:
    """A value as written in the file."""
    return repr(node.value) if isinstance(node, yaml.ScalarNode) else "a " + ("mapping" if isinstance(
        node, yaml.MappingNode) else "list")


def read_yaml(path: str | Path) -> dict:
    """The top-level mapping of a config file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not p.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); "
                          "save it as UTF-8") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it needs at least dataset, model, loss and optimizer")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (dataset:, model:, ...), "
                          f"got {show(raw)}")
    return raw

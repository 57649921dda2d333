"""Name registries and the one checker of hyperparameters.

Configs name things; a new item is one decorated class or function whose registry line
declares the constraints of its hyperparameters (scikit-learn's `_parameter_constraints`):

    @LOSSES.register("huber", delta=Real(gt=0))
    class Huber(Loss): ...

Defaults come from the signature. `Registry.check` applies the constraints for configs,
`--set`, grids and the Python API alike, and writes every message in one form:
`dotted.key: what is wrong, got VALUE` (+ "did you mean" where a name is close). Each
registry declares its own context arguments, the ones the caller supplies (an optimizer's
`params`, a model's `n_in`), which a config can never set. Relations between options
(nesterov needs momentum) stay in the item's constructor, in the same message form.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from numbers import Real as _Real
from typing import Any, TypeVar

from lossbench.errors import ConfigError

T = TypeVar("T")
REQUIRED = inspect.Parameter.empty


def show(value: Any) -> str:
    """A value as the user wrote it: strings quoted, the rest as JSON (lists, null, true)."""
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value, default=str)
    except ValueError:  # circular structures cannot come from YAML; be safe anyway
        return repr(value)


def did_you_mean(word: Any, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fail(key: str, what: str, value: Any, choices=()) -> ConfigError:
    """The one message form: `key: what, got VALUE (did you mean ...?)`."""
    hint = did_you_mean(value, choices) if isinstance(value, str) and choices else ""
    return ConfigError(f"{key}: {what}, got {show(value)}{hint}")


# ---------------------------------------------------------------- constraints


class Constraint:
    """What one hyperparameter may be. `what` completes "must be ..."; `short` is what
    `lossbench list` prints as the allowed range."""

    what = "a value"
    short = "any"

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def check(self, key: str, value: Any) -> None:
        if not self.ok(value):
            raise fail(key, f"must be {self.what}", value)


def _is_number(v: Any) -> bool:
    return isinstance(v, _Real) and not isinstance(v, bool) and math.isfinite(v)


def _bounds(gt, ge, lt, le) -> str:
    low = f"({gt}" if gt is not None else f"[{ge}" if ge is not None else None
    high = f"{lt})" if lt is not None else f"{le}]" if le is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"{'>' if gt is not None else '>='} {low[1:]}"
    if high:
        return f"{'<' if lt is not None else '<='} {high[:-1]}"
    return ""


@dataclass(frozen=True)
class Real(Constraint):
    """A finite number (an integer will do; a string, a boolean, NaN or inf will not)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    @property
    def short(self) -> str:
        return _bounds(self.gt, self.ge, self.lt, self.le) or "number"

    @property
    def what(self) -> str:
        return f"a number {_bounds(self.gt, self.ge, self.lt, self.le)}".rstrip()

    def ok(self, v):
        return _is_number(v) and _within(v, self.gt, self.ge, self.lt, self.le)


def _within(v, gt, ge, lt, le) -> bool:
    return ((gt is None or v > gt) and (ge is None or v >= ge)
            and (lt is None or v < lt) and (le is None or v <= le))


@dataclass(frozen=True)
class Int(Constraint):
    """A whole number (not 3.0, not true)."""

    ge: int | None = None
    le: int | None = None

    @property
    def short(self) -> str:
        return f"integer {_bounds(None, self.ge, None, self.le)}".rstrip()

    @property
    def what(self) -> str:
        return f"an {self.short}"

    def ok(self, v):
        return isinstance(v, Integral) and not isinstance(v, bool) and _within(v, None, self.ge, None, self.le)


@dataclass(frozen=True)
class Bool(Constraint):
    what = "true or false"
    short = "true/false"

    def ok(self, v):
        return isinstance(v, bool)


@dataclass(frozen=True)
class Text(Constraint):
    what = "a string"
    short = "string"

    def ok(self, v):
        return isinstance(v, str)


class Choice(Constraint):
    """One of a fixed set of strings."""

    def __init__(self, *options: str):
        self.options = options
        self.what = f"one of {list(options)}" if len(options) > 1 else repr(options[0])
        self.short = "|".join(options)

    def ok(self, v):
        return isinstance(v, str) and v in self.options

    def check(self, key, value):
        if not self.ok(value):
            raise fail(key, f"must be {self.what}", value, self.options)


@dataclass(frozen=True)
class Optional(Constraint):
    """null, or what `inner` allows."""

    inner: Constraint

    @property
    def what(self):
        return f"{self.inner.what} or null"

    @property
    def short(self):
        return f"{self.inner.short} or null"

    def ok(self, v):
        return v is None or self.inner.ok(v)

    def check(self, key, value):
        if value is not None:
            self.inner.check(key, value)


@dataclass(frozen=True)
class AnyOf(Constraint):
    """What either constraint allows (`batch_size`: an integer or 'full')."""

    first: Constraint
    second: Constraint

    @property
    def what(self):
        return f"{self.first.what} or {self.second.what}"

    @property
    def short(self):
        return f"{self.first.short} or {self.second.short}"

    def ok(self, v):
        return self.first.ok(v) or self.second.ok(v)


@dataclass(frozen=True)
class Seq(Constraint):
    """A list of items (a tuple from Python too); `scalar=True` also takes one bare item."""

    item: Constraint
    length: int | None = None
    scalar: bool = False
    min_length: int = 0
    unique: bool = False

    @property
    def what(self):
        if self.scalar:
            return f"{self.item.what}, or a {'non-empty ' if self.min_length else ''}list of them"
        n = f"{self.length} " if self.length else ""
        return f"a {'non-empty ' if self.min_length else ''}list of {n}{_plural(self.item.what)}"

    @property
    def short(self):
        if self.scalar:
            return f"{self.item.short}, or a list of them"
        return f"{self.length or 'a list of'} values, each {self.item.short}"

    def ok(self, v):
        try:
            self.check("", v)
        except ConfigError:
            return False
        return True

    def check(self, key, value):
        if self.scalar and not isinstance(value, (list, tuple)):
            if not self.item.ok(value):  # one bare item: the key is the whole option, not item [0]
                raise fail(key, f"must be {self.what}", value)
            return
        items = value
        if not isinstance(items, (list, tuple)) or (self.length is not None and len(items) != self.length) \
                or len(items) < self.min_length:
            raise fail(key, f"must be {self.what}", value)
        for i, v in enumerate(items):
            self.item.check(f"{key}[{i}]", v)
        if self.unique and len({json.dumps(v) for v in items}) != len(items):
            raise fail(key, "must not repeat a value", value)


def _plural(what: str) -> str:
    """'a number in [0, 1)' -> 'numbers in [0, 1)'; 'an integer >= 1' -> 'integers >= 1'."""
    words = what.split(" ", 2)
    if words[0] in ("a", "an") and len(words) > 1:
        return " ".join([words[1] + "s", *words[2:]])
    return what


class Check(Constraint):
    """A constraint given as a predicate and its description (e.g. a list of URLs)."""

    def __init__(self, ok: Callable[[Any], bool], what: str, short: str | None = None):
        self.ok, self.what, self.short = ok, what, short or what  # type: ignore[method-assign]


class Nested(Constraint):
    """A mapping of options checked by its own schema (train.early_stopping)."""

    def __init__(self, schema: Schema, what: str = "a mapping"):
        self.schema, self.what, self.short = schema, what, "mapping"

    def check(self, key, value):
        if not isinstance(value, dict):
            raise fail(key, f"must be {self.what}", value)
        self.schema.check(value, key)

    def ok(self, v):
        return isinstance(v, dict)


class Named(Constraint):
    """An item of another registry: a name, or a mapping {name: ..., **options}
    (train.schedule)."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.what = f"{_a(registry.kind)} name or a mapping with a name"
        self.short = _a(registry.kind)

    def check(self, key, value):
        name, options = split_named(key, value, self.registry.kind)
        self.registry.check(name, options, key)

    def ok(self, v):
        return isinstance(v, (str, dict))


def _a(noun: str) -> str:
    """'an optimizer', 'a loss'."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def split_named(key: str, value: Any, kind: str) -> tuple[str, dict]:
    """`adam` or {name: adam, lr: 0.1} -> ("adam", {"lr": 0.1})."""
    if isinstance(value, str):
        return value, {}
    if not isinstance(value, dict):
        raise fail(key, f"must be {_a(kind)} name or a mapping with a name", value)
    name = value.get("name")
    if not isinstance(name, str):
        raise fail(f"{key}.name", f"must name {_a(kind)}", name)
    return name, {k: v for k, v in value.items() if k != "name"}


# ---------------------------------------------------------------- schemas


@dataclass(frozen=True)
class Param:
    default: Any  # REQUIRED if the caller must give it
    constraint: Constraint


class Schema:
    """The options a callable takes, with defaults (from its signature) and constraints."""

    def __init__(self, params: dict[str, Param], owner: str = ""):
        self.params, self.owner = params, owner

    @classmethod
    def of(cls, fn: Callable, context=(), owner: str = "", **constraints: Constraint) -> Schema:
        """Every keyword of `fn` but the context needs a constraint, and vice versa: a
        hyperparameter nobody checks, or a check of nothing, is a contributor's mistake."""
        target = fn.__init__ if inspect.isclass(fn) else fn
        sig = inspect.signature(target).parameters.values()
        names = [p.name for p in sig if p.name != "self" and p.name not in context
                 and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        missing, extra = set(names) - set(constraints), set(constraints) - set(names)
        if missing or extra:
            raise TypeError(f"{owner or fn}: constraints missing for {sorted(missing)}, "
                            f"given for unknown options {sorted(extra)}")
        defaults = {p.name: p.default for p in sig}
        return cls({n: Param(defaults[n], constraints[n]) for n in names}, owner)

    def __or__(self, other: Schema) -> Schema:
        return Schema({**self.params, **other.params}, other.owner or self.owner)

    def check(self, options: dict, where: str) -> dict:
        """`options` checked; returns them with the defaults filled in."""
        for key, value in options.items():
            if key not in self.params:
                takes = ", ".join(self.params) or "no options"
                raise ConfigError(f"{where}.{key}: unknown option ({self.owner or where} takes {takes}), "
                                  f"got {show(value)}{did_you_mean(key, self.params)}")
            self.params[key].constraint.check(f"{where}.{key}", value)
        for key, p in self.params.items():
            if p.default is REQUIRED and key not in options:
                raise ConfigError(f"{where}.{key}: required by {self.owner or where} ({p.constraint.what}), "
                                  "got nothing")
        return {**{k: p.default for k, p in self.params.items() if p.default is not REQUIRED}, **options}

    def describe(self) -> dict[str, str]:
        """{option: 'default (allowed)'} for `lossbench list`."""
        return {k: ("required" if p.default is REQUIRED else _default(p.default)) + f" ({p.constraint.short})"
                for k, p in self.params.items()}


def _default(v: Any) -> str:
    return show(list(v) if isinstance(v, tuple) else v)


# ---------------------------------------------------------------- registries


@dataclass(frozen=True)
class _Alias:
    target: str
    doc: str
    defaults: dict


class Registry:
    """Items of one kind by name. `kind` names them in messages ("optimizer"); `section`
    is their config key ("optimizer", "train.schedule"); `context` the constructor
    arguments the caller supplies; `common` options every item takes (a dataset's split).

    What a contributor's item must give (checked when it registers, or by the contract
    tests): a constraint for every keyword parameter but the context ones; a docstring
    whose first line is a one-sentence summary; for losses and optimizers, a torch parity
    case in tests/test_parity.py. What it gets: `build` calls it only with checked options,
    defaults filled in, so its constructor checks relations between options, not types.
    """

    def __init__(self, kind: str, section: str | None = None, context: tuple[str, ...] = (),
                 common: Schema | None = None):
        self.kind, self.section, self.context = kind, section or kind, context
        self.common = common
        self._items: dict[str, Any] = {}
        self._schemas: dict[str, Schema] = {}

    def register(self, name: str, obj: Any = None, **constraints: Constraint) -> Callable[[T], T]:
        """Decorator (or call with `obj`): register under `name` with the constraints of
        every hyperparameter."""

        def add(item):
            self._claim(name)
            schema = Schema.of(item, self.context, f"{self.kind} {name!r}", **constraints)
            self._items[name] = item
            self._schemas[name] = (self.common | schema) if self.common else schema
            return item

        return add if obj is None else add(obj)

    def alias(self, name: str, target: str, doc: str, **defaults: Any) -> None:
        """`name` is `target` with other defaults (optax's `nadamw = partial(adamw, ...)`)."""
        self._claim(name)
        base = self._schemas[target]
        unknown = set(defaults) - set(base.params)
        if unknown:
            raise TypeError(f"alias {name!r}: {target!r} has no options {sorted(unknown)}")
        params = {k: Param(defaults.get(k, p.default), p.constraint) for k, p in base.params.items()}
        self._items[name] = _Alias(target, doc, defaults)
        self._schemas[name] = Schema(params, f"{self.kind} {name!r}")

    def _claim(self, name: str) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def _name(self, name: Any, where: str | None = None) -> str:
        if not isinstance(name, str) or name not in self._items:
            raise fail(f"{where or self.section}.name", f"must be one of {self.names()}", name, self.names())
        return name

    def get(self, name: str) -> Any:
        """The class or function registered as `name` (an alias's target)."""
        item = self._items[self._name(name)]
        return self._items[item.target] if isinstance(item, _Alias) else item

    def doc(self, name: str) -> str:
        """The item's docstring (an alias's own)."""
        item = self._items[self._name(name)]
        # its own docstring: inspect.getdoc would hand a subclass its base class's
        return item.doc if isinstance(item, _Alias) else inspect.cleandoc(item.__doc__ or "")

    def schema(self, name: str) -> Schema:
        return self._schemas[self._name(name)]

    def check(self, name: str, options: dict, where: str | None = None, /) -> dict:
        """`options` (a config mapping without `name`) checked against the item's
        constraints; returns them with the defaults filled in."""
        return self.schema(self._name(name, where)).check(options, where or self.section)

    def build(self, name: str, /, *context, **options) -> Any:
        """Check `options`, then call the item with the context arguments and them."""
        return self.get(name)(*context, **self.check(name, options))

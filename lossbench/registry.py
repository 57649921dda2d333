"""Name registries: configs name things, and a new item is one decorated class.

Each registry knows its items' hyperparameters (read from the constructor signature),
so validation, `lossbench list` and error messages all come from one place.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, TypeVar

from lossbench.errors import ConfigError

T = TypeVar("T")

# Constructor arguments that are not hyperparameters a config can set.
_NOT_HYPERPARAMS = {"self", "params", "seed", "n_in", "n_out", "rng", "base_lr", "epochs"}


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable[[T], T]:
        def add(item):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Any:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; "
                f"supported {self.kind}s are {self.names()}"
            ) from None

    def hyperparams(self, name: str) -> dict[str, Any]:
        """Keyword arguments the item takes, with their defaults (required ones map to
        inspect.Parameter.empty)."""
        item = self.get(name)
        target = item.__init__ if inspect.isclass(item) else item
        out = {}
        for p in inspect.signature(target).parameters.values():
            if p.name in _NOT_HYPERPARAMS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = p.default
        return out

    def check_kwargs(self, name: str, kwargs: dict) -> None:
        allowed = self.hyperparams(name)
        for key in kwargs:
            if key not in allowed and key not in _NOT_HYPERPARAMS:
                raise ConfigError(
                    f"{self.kind} {name!r} does not take {key!r}{did_you_mean(key, allowed)}; "
                    f"it takes {sorted(allowed)}"
                )

    def build(self, name: str, *args, **kwargs) -> Any:
        item = self.get(name)
        self.check_kwargs(name, kwargs)
        return item(*args, **kwargs)

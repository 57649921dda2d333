"""Search: trials drawn from a space of hyperparameters, by a Halton sequence or at random.

The Halton sequence follows AlgoPerf's `halton.py` (from init2winit; Bousquet et al. 2017,
arXiv:1706.03200): one prime base per dimension, the radical inverse of the trial's index
with its digits scrambled by a random permutation per dimension (0 stays 0), a random
shift per dimension taken modulo 1, and the first points skipped. Two differences, both
for reproducible, resumable sweeps: the randomness comes from `np.random.default_rng`
seeded by the search's `seed` (AlgoPerf seeds by the base and shuffles unseeded), and the
points are not shuffled afterwards, so trial i never depends on `trials`: raising it keeps
the earlier trials. The bases are the smallest primes (2, 3, 5, ...), not AlgoPerf's
primes just below 1000, whose 1-D projections are no better than random for a few dozen
trials.
"""

from __future__ import annotations

import math

import numpy as np

from lossbench.registry import Check, Choice, Int, Schema, fail, show

SKIP = 100  # as AlgoPerf: the first points of a Halton sequence correlate across dimensions
DIGITS = 4  # searched floats are rounded to 4 significant digits: readable labels, stable ids
METHODS = Choice("halton", "random")


def primes(n: int) -> list[int]:
    """The first n primes."""
    out: list[int] = []
    k = 2
    while len(out) < n:
        if all(k % p for p in out if p * p <= k):
            out.append(k)
        k += 1
    return out


def _radical_inverse(i: int, base: int, digits) -> float:
    """i's base-`base` digits, each mapped by `digits`, mirrored behind the point."""
    x, scale = 0.0, 1.0 / base
    while i:
        x += digits[i % base] * scale
        i //= base
        scale /= base
    return x


def halton(n: int, dims: int, seed: int, scramble: bool = True, skip: int = SKIP) -> np.ndarray:
    """(n, dims) points in [0, 1): trials 0..n-1 of the seeded, scrambled Halton sequence.
    Without `scramble` (and skip 0) it is the textbook sequence: 1/2, 1/4, 3/4, ... in base 2."""
    out = np.empty((n, dims))
    for d, base in enumerate(primes(dims)):
        # one generator per dimension, by its index: adding a dimension leaves the others alone
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, d)))
        digits = [0, *(rng.permutation(np.arange(1, base)).tolist())] if scramble else list(range(base))
        shift = rng.random() if scramble else 0.0
        for t in range(n):
            out[t, d] = math.fmod(_radical_inverse(skip + t + 1, base, digits) + shift, 1.0)
    return out


def uniform(n: int, dims: int, seed: int) -> np.ndarray:
    """(n, dims) uniform points in [0, 1); trial t from its own generator, so it does not
    depend on n."""
    return np.array([np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, t))).random(dims)
                     for t in range(n)]).reshape(n, dims)


def _search(space, trials: int, method: str = "halton", seed: int = 0):
    """What a `search` block holds: a space of dotted keys, how many trials, how they are drawn."""


BLOCK = Schema.of(_search, owner="search",
                  space=Check(lambda v: bool(v) and (isinstance(v, dict) or isinstance(v, list) and all(
                      isinstance(s, dict) and s for s in v)), "a non-empty mapping of dotted keys, or a list of them"),
                  trials=Int(ge=1), method=METHODS, seed=Int(ge=0))


def _range(low, high, scale: str = "linear", type: str = "float"):  # noqa: A002 - the YAML key
    """A searched range: floats or integers in [low, high], linear or log-scaled."""


RANGE = Schema.of(_range, owner="a range", low=Check(lambda v: _number(v), "a number"),
                  high=Check(lambda v: _number(v), "a number"), scale=Choice("linear", "log"),
                  type=Choice("float", "int"))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_dimension(at: str, spec) -> dict | list:
    """A space entry checked: a non-empty list (a choice) or a range with defaults filled in."""
    if isinstance(spec, list):
        if not spec:
            raise fail(at, "must be a non-empty list of choices or a range {low, high, scale}", spec)
        return spec
    if not isinstance(spec, dict):
        raise fail(at, "must be a list of choices or a range {low: ..., high: ..., scale: linear|log}", spec)
    r = RANGE.check(spec, at)
    if r["type"] == "int":
        for k in ("low", "high"):
            if not isinstance(r[k], int):
                raise fail(f"{at}.{k}", "must be an integer for type int", r[k])
    if not r["low"] < r["high"]:
        raise fail(f"{at}.high", f"must be > low ({show(r['low'])})", r["high"])
    if r["scale"] == "log" and r["low"] <= 0:
        raise fail(f"{at}.low", "must be > 0 for scale log", r["low"])
    return r


def value(dim, u: float):
    """The value at unit coordinate u in [0, 1) of a checked dimension."""
    if isinstance(dim, list):
        return dim[min(int(u * len(dim)), len(dim) - 1)]
    low, high, log = dim["low"], dim["high"], dim["scale"] == "log"
    if dim["type"] == "int":  # every integer in [low, high] equally likely (on its scale)
        top = high + 1
        x = low * (top / low) ** u if log else low + u * (top - low)
        return int(min(math.floor(x), high))
    x = low * (high / low) ** u if log else low + u * (high - low)
    return min(max(float(f"{x:.{DIGITS}g}"), low), high)


def block(raw, at: str) -> dict:
    """A `search` block checked, defaults filled, each dimension checked (keys are the caller's)."""
    if not isinstance(raw, dict):
        raise fail(at, "must be a mapping {method, trials, seed, space}", raw)
    b = BLOCK.check(raw, at)
    if isinstance(b["space"], list):
        b["space"] = [{k: check_dimension(f"{at}.space[{i}].{k}", v) for k, v in s.items()}
                      for i, s in enumerate(b["space"])]
    else:
        b["space"] = {k: check_dimension(f"{at}.space.{k}", v) for k, v in b["space"].items()}
    return b


def spaces(b: dict) -> list[tuple[str, dict]]:
    """A checked block's spaces, each with where it is: one, or the list's."""
    if isinstance(b["space"], list):
        return [(f"space[{i}]", s) for i, s in enumerate(b["space"])]
    return [("space", b["space"])]


def trials(space: dict, b: dict) -> list[dict]:
    """A space's trials in order: [{dotted key: value}, ...]; trial i depends only on i (and
    the block's method and seed), not on how many there are."""
    keys = list(space)
    draw = halton if b["method"] == "halton" else uniform
    points = draw(b["trials"], len(keys), b["seed"])
    return [{k: value(space[k], float(u)) for k, u in zip(keys, row)} for row in points]


def scales(search) -> dict[str, str]:
    """{key: 'linear' | 'log' | 'choice'} of the keys a resolved config's `search` (a block
    or a list) draws: from a range (log-scaled anywhere is 'log') or from a list."""
    blocks = search if isinstance(search, list) else [search] if isinstance(search, dict) else []
    found: dict[str, str] = {}
    for b in blocks:
        space = b.get("space") if isinstance(b, dict) else None
        for s in space if isinstance(space, list) else [space]:
            for k, d in (s if isinstance(s, dict) else {}).items():
                if isinstance(d, list):
                    found.setdefault(k, "choice")
                elif isinstance(d, dict) and found.get(k) != "log":
                    found[k] = "log" if d.get("scale") == "log" else "linear"
    return found

"""Statistics over seeds, in NumPy alone (scipy is a test dependency, to check these against).

Every function takes *scores*: higher is better, and a diverged run is -inf (the worst
outcome, never missing). compare.py turns a metric into scores (negated when lower is
better) and back. Failed runs are missing: they are never passed in.

- iqm: the interquartile mean, rliable's IQM = scipy.stats.trim_mean(x, 0.25); -inf when
  its middle half holds a diverged run (then it is shown as "diverged", not dropped).
- bootstrap_ci: a percentile interval from resampling runs (never epochs), with index
  matrices drawn from np.random.default_rng(seed): the same seed gives the same interval.
- wilcoxon_p: the two-sided signed-rank p-value as scipy.stats.wilcoxon computes it with
  its defaults (zero_method="wilcox", method="auto", scipy 1.17).
- prob_improvement: P(X > Y), Mann-Whitney U / (n m), ties counted half.
- holm: Holm's step-down adjustment of p-values.
"""

from __future__ import annotations

import math

import numpy as np

WEAK = 5  # fewer runs than this per group: the statistics are shown, with a note that they are weak


def iqm(x, axis: int = -1) -> np.ndarray | float:
    """Mean of the middle half: drop int(n/4) values at each end of the sorted sample."""
    x = np.sort(np.asarray(x, dtype=float), axis=axis)
    n = x.shape[axis]
    if n == 0:
        return math.nan
    cut = int(0.25 * n)
    with np.errstate(invalid="ignore"):
        return np.take(x, range(cut, n - cut), axis=axis).mean(axis=axis)


def median(x) -> float:
    """The median; -inf (diverged) values sort below every finite one."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return math.nan
    x = np.sort(x)
    mid = len(x) // 2
    return float(x[mid]) if len(x) % 2 else _midpoint(x[mid - 1], x[mid])


def _midpoint(a: float, b: float) -> float:
    return a if a == b else float((a + b) / 2) if np.isfinite(a) else float(a)  # -inf and a finite value: -inf


def quantiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of bootstrap statistics at `level` (0.95: 2.5% and 97.5%).
    Linear interpolation, as np.percentile; where it meets -inf, the nearer order statistic."""
    a = (1 - level) / 2
    with np.errstate(invalid="ignore"):
        lo, hi = np.quantile(stats, [a, 1 - a])
    if math.isnan(lo):
        lo = np.quantile(stats, a, method="lower")
    if math.isnan(hi):
        hi = np.quantile(stats, 1 - a, method="higher")
    return float(lo), float(hi)


def bootstrap_ci(x, statistic=iqm, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(x): `resamples` samples of len(x) runs
    drawn with replacement (statistic takes axis=-1). NaN for fewer than two runs."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    return quantiles(statistic(x[idx], axis=-1), level)


def prob_improvement(x, y, axis: int = -1) -> np.ndarray | float:
    """P(X > Y) + P(X = Y) / 2 over all pairs of one run of x and one of y (U / nm).
    Along `axis`, for bootstrap samples stacked on the other axes."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    gt = x[..., :, None] > y[..., None, :]
    eq = x[..., :, None] == y[..., None, :]  # two diverged runs tie
    return (gt + 0.5 * eq).mean(axis=(-2, -1))


def differences(x, y) -> np.ndarray:
    """x - y for paired scores; two diverged runs differ by 0 (a tie), not NaN."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    with np.errstate(invalid="ignore"):
        d = x - y
    return np.where((x == y), 0.0, d)


def _ranks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) of `a`, and the size of each tie block."""
    order = np.argsort(a, kind="stable")
    s = a[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, len(s)])
    avg = starts + (sizes + 1) / 2
    r = np.empty(len(a))
    r[order] = np.repeat(avg, sizes)
    return r, sizes


def wilcoxon_p(d) -> tuple[float, float]:
    """(two-sided p-value, r_plus - n(n+1)/4) of the signed-rank test of paired differences
    `d`, as scipy.stats.wilcoxon(d) (1.17, defaults): zeros are dropped; with n = len(d)
    (zeros included) <= 50 and no ties or zeros, the exact distribution; with ties or
    zeros and n <= 13, the exact sign-flip permutation distribution; otherwise the normal
    approximation with the tie correction (scipy's default: no continuity correction)."""
    d = np.asarray(d, dtype=float)
    n_all, nz = len(d), d[d != 0]
    n = len(nz)
    if n_all == 0:
        return math.nan, math.nan
    if n == 0:
        return 1.0, 0.0
    r, ties = _ranks(np.abs(nz))
    r_plus = float(r[nz > 0].sum())
    mean = n * (n + 1) / 4
    has_ties = (ties > 1).any() or n < n_all
    if n_all <= 50 and not has_ties or has_ties and n_all <= 13:
        twice = np.rint(2 * r).astype(int)  # average ranks are multiples of 1/2
        counts = np.zeros(int(twice.sum()) + 1)  # sign-flip distribution of 2 r_plus
        counts[0] = 1.0
        for k in twice:
            counts[k:] = counts[k:] + counts[:-k].copy()
        pmf = counts / counts.sum()
        k = int(round(2 * r_plus))
        p = 2 * min(pmf[k:].sum(), pmf[:k + 1].sum())
        return float(min(p, 1.0)), r_plus - mean
    se = math.sqrt((n * (n + 1) * (2 * n + 1) - (ties**3 - ties).sum() / 2) / 24)
    z = (r_plus - mean) / se
    return float(math.erfc(abs(z) / math.sqrt(2))), r_plus - mean


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count)."""
    p = np.asarray(p, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def paired(x, y, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict:
    """Scores of one group (x) against its baseline (y), paired by position (seed): win
    rate (ties half), mean difference, P(X > Y) and the Wilcoxon p-value; the intervals
    resample the pairs (one index matrix for both)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    d = differences(x, y)
    p, side = wilcoxon_p(d)
    out = {"pairs": len(d), "win_rate": float(((d > 0) + 0.5 * (d == 0)).mean()) if len(d) else math.nan,
           "diff_mean": float(d.mean()) if len(d) else math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan,
           "p_improve": float(prob_improvement(x, y)) if len(d) else math.nan, "pi_ci_low": math.nan,
           "pi_ci_high": math.nan, "p_value": p, "direction": float(np.sign(side)) if len(d) else math.nan}
    if len(d) >= 2:
        idx = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
        with np.errstate(invalid="ignore"):
            out["diff_ci_low"], out["diff_ci_high"] = quantiles(d[idx].mean(axis=-1), level)
        out["pi_ci_low"], out["pi_ci_high"] = quantiles(prob_improvement(x[idx], y[idx]), level)
    return out

"""L-BFGS, the one optimizer that re-evaluates the loss within a step (a closure)."""

from __future__ import annotations

import math

import numpy as np

from lossbench.engine.optimizers.base import LR, NONNEG, OPTIMIZERS, Optimizer
from lossbench.registry import Choice, Int, Optional


class _NonFinite(Exception):
    """A closure returned a non-finite loss: the step ends there."""


def _dot(a: np.ndarray, b: np.ndarray) -> np.floating:
    """A scalar of the parameters' type (float32), as torch's 0-d tensor: with NumPy's
    promotion (NEP 50) the scalar arithmetic below stays in float32 where torch's does,
    Python floats weak."""
    return np.dot(a, b)


@OPTIMIZERS.register("lbfgs", lr=LR, max_iter=Int(ge=1), max_eval=Optional(Int(ge=1)), tolerance_grad=NONNEG,
                     tolerance_change=NONNEG, history_size=Int(ge=1), line_search_fn=Optional(Choice("strong_wolfe")))
class LBFGS(Optimizer):
    """Limited-memory BFGS with an optional strong-Wolfe line search, torch.optim.LBFGS (Nocedal, 1980).

    One step is up to max_iter iterations (max_eval closure calls) from the closure's
    loss and gradient g at the current point:
    d = -H g, H the inverse Hessian estimate of the last history_size pairs
    (s = t d, y = g_new - g, kept when y.s > 1e-10; H0 = y.s / y.y), d = -g at first
    t = min(1, 1/|g|_1) lr on the very first iteration, else lr; with line_search_fn
    'strong_wolfe' t is searched along d (cubic interpolation); p += t d
    It stops on |g|_max <= tolerance_grad, g.d > -tolerance_change, |t d|_max or a loss
    change <= tolerance_change; d, t, the history and the counts carry over to the next
    step, as torch's state does. Follows torch's code step for step, its float32 0-d
    tensors (y.s, ro, H0, g.d, often t) float32 NumPy scalars, so the scalar arithmetic
    rounds as torch's (with NumPy 2's promotion; NumPy 1 computes some of it in float64).
    Results agree to float32 rounding, not bit for bit: NumPy's float32 dot products sum
    in another order than torch's, and over many iterations on an ill-conditioned
    problem, or at the float32 floor where the stopping tests turn on the last bit, the
    two drift apart (tests/test_parity.py measures it). No weight decay, as in torch.

    It needs a closure: `step_closure(closure)`, where `closure()` evaluates the loss
    and gradient at the current parameters and returns (loss, flat gradient); `step`
    refuses. It runs alone: one flat parameter array or a (1, P) row, never a stack of
    runs. A closure that returns a non-finite loss ends the step at once, the parameters
    where that loss was evaluated, and sets `diverged` (torch would go on with NaN).
    """

    needs_closure = True

    def __init__(self, params, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        super().__init__(params, lr, 0.0)
        p = self.params[0] if len(self.params) == 1 else None
        if p is None or p.ndim > 2 or (p.ndim == 2 and len(p) != 1):
            raise ValueError("lbfgs runs alone: it takes one flat parameter array or one (1, P) row, "
                             f"got {[a.shape for a in self.params]}")
        self.flat = p.reshape(-1)
        if not np.shares_memory(self.flat, p):
            raise ValueError("lbfgs updates its parameters in place: they must be one contiguous array")
        # stacked (build_stacked, K = 1): every number is a (1, 1) column
        self.max_iter, self.history_size = int(_one(max_iter)), int(_one(history_size))
        self.max_eval = self.max_iter * 5 // 4 if max_eval is None else int(_one(max_eval))
        self.tolerance_grad, self.tolerance_change = float(_one(tolerance_grad)), float(_one(tolerance_change))
        self.line_search_fn = line_search_fn
        self.diverged = False

    @classmethod
    def branches(cls, hp):
        return hp["line_search_fn"], hp["max_eval"] is None

    def copies(self) -> int:
        # the history (s and y pairs), d, the previous and current gradient, the line
        # search's starting point, and the base class's scratch
        return 2 * self.history_size + 4 + len(vars(self.scratch[0]))

    def step(self, grads, rows=None):
        raise TypeError("lbfgs needs a closure: call step_closure(closure), closure() returning (loss, gradient) "
                        "at the current parameters (L-BFGS evaluates several points per step)")

    def _evaluate(self, closure) -> tuple[float, np.ndarray]:
        out = closure()
        if not (isinstance(out, tuple) and len(out) == 2):  # torch's closures return the loss alone
            raise TypeError("an lbfgs closure returns (loss, gradient): NumPy has no autograd to find the "
                            f"gradient, got {type(out).__name__}")
        loss, grad = out
        loss = float(loss)
        if not math.isfinite(loss):
            raise _NonFinite
        flat_grad = np.array(grad, dtype=self.flat.dtype).reshape(-1)  # a copy: the closure may reuse its buffer
        if flat_grad.size != self.flat.size:
            raise ValueError(f"the closure's gradient has {flat_grad.size} values, the parameters {self.flat.size}")
        return loss, flat_grad

    def _add(self, t: float, d: np.ndarray) -> None:
        """p += t d (torch's _add_grad)."""
        self.flat += self.flat.dtype.type(t) * d

    def _directional_evaluate(self, closure, x: np.ndarray, t: float, d: np.ndarray):
        self._add(t, d)
        loss, flat_grad = self._evaluate(closure)
        self.flat[...] = x
        return loss, flat_grad

    def step_closure(self, closure) -> float:
        """One L-BFGS step (torch's `step(closure)`); returns the closure's first loss,
        the one at the parameters before the step, or NaN if a loss it evaluated was not
        finite (then `diverged` is set)."""
        self.t += 1
        try:
            return self._step(closure)
        except _NonFinite:
            self.diverged = True
            return math.nan

    def _step(self, closure) -> float:
        lr = self._lr.item()  # a schedule may have changed it (stacked: the (1, 1) column)
        max_iter, max_eval = self.max_iter, self.max_eval
        tolerance_grad, tolerance_change = self.tolerance_grad, self.tolerance_change
        f = self.flat.dtype.type  # float32: torch's casts of scalars (alpha=, mul) to the tensor's type
        state = self.state[0]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        loss, flat_grad = self._evaluate(closure)
        orig_loss = loss
        current_evals = 1
        state["func_evals"] += 1
        opt_cond = np.abs(flat_grad).max() <= tolerance_grad
        if opt_cond:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # the descent direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * f(t)
                ys = _dot(y, s)
                if ys > 1e-10:
                    if len(old_dirs) == self.history_size:  # limited memory: drop the oldest pair
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / _dot(y, y)
                # two-loop recursion: d = -H g
                num_old = len(old_dirs)
                al = [0.0] * num_old
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = _dot(old_stps[i], q) * ro[i]
                    q -= f(al[i]) * old_dirs[i]
                d = r = q * f(H_diag)
                for i in range(num_old):
                    be_i = _dot(old_dirs[i], r) * ro[i]
                    r += f(al[i] - be_i) * old_stps[i]

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss

            # the step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / np.abs(flat_grad).sum()) * lr
            else:
                t = lr
            gtd = _dot(flat_grad, d)
            if gtd > -tolerance_change:  # not a descent direction (to tolerance)
                break

            ls_func_evals = 0
            if self.line_search_fn is not None:
                x_init = self.flat.copy()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd,
                                                                  max_ls=max_eval - current_evals)
                self._add(t, d)
                opt_cond = np.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add(t, d)
                if n_iter != max_iter:  # torch: no evaluation after the last iteration
                    loss, flat_grad = self._evaluate(closure)
                    opt_cond = np.abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.abs(d * f(t)).max() <= tolerance_change:  # lack of progress
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss


def _one(x):
    """A hyperparameter's value: a stacked optimizer's (1, 1) column holds it as a float."""
    return x.item() if isinstance(x, np.ndarray) else x


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """The minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), within bounds
    (torch's _cubic_interpolate, from torch/optim's polyinterp.lua)."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step t along d meeting the strong Wolfe conditions: bracket, then zoom (torch's
    _strong_wolfe, from torch/optim's lswolfe.lua). Returns (f, g, t, evaluations)."""
    d_norm = np.abs(d).max()
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = _dot(g_new, d)

    # bracket an interval containing a point satisfying the Wolfe criteria
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    bracket_gtd = None
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        # interpolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1

    if ls_iter == max_ls:  # reached the most iterations
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: refine the bracket until a point satisfies the criteria
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:  # the bracket is too small
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # too close to a boundary, twice or at it: 0.1 of the bracket away from it
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo condition not met, or not lower than the lowest point
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True  # Wolfe conditions met
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the old high becomes the new low
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            # the new point becomes the new low
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new

    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals

"""Full-batch optimizers driven by a closure: L-BFGS, nonlinear conjugate gradient, Newton.

Like torch.optim.LBFGS, `step(closure)` re-evaluates the objective as often as it needs:
the closure zeroes the gradients, computes the loss, fills every parameter's `.grad` and
returns the loss (a float). Parameters live in one flat buffer (cygrad.nn.flatten), so
the search directions are plain 1-D arrays over the whole model. One parameter group
only (as torch's LBFGS); a frozen parameter (requires_grad=False) reads as a zero
gradient and is never moved. `state_dict()` holds the search history (directions, step
lengths, counters) as plain arrays and numbers, so a resumed run continues identically.
"""
import numpy as np

from cygrad.autograd import bump_versions, enable_grad
from cygrad.optim.linesearch import armijo_backtracking, strong_wolfe
from cygrad.optim.optimizer import Optimizer

# kinds of history entries: how state_dict stores them and load_state_dict checks them
INT, FLOAT, FLOATS, VECTOR, VECTORS = "int", "float", "floats", "vector", "vectors"


class _ClosureOptimizer(Optimizer):
    """Shared plumbing: evaluate the closure, read the flat gradient, move along a
    direction; the history named in `_history` is the state_dict's state."""

    _history = (("func_evals", INT), ("n_iter", INT))

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        self.func_evals = 0
        self.n_iter = 0
        self._active = None  # boolean mask of the trainable entries, None when all are

    def _append_group(self, group):
        if self.param_groups:  # before anything is flattened
            raise ValueError(f"{type(self).__name__} doesn't support per-parameter options "
                             "(parameter groups)")
        super()._append_group(group)

    @property
    def _group(self):
        return self.param_groups[0]

    def _evaluate(self, closure):
        """Run the closure; return (loss, copy of the flat gradient, 0 where frozen)."""
        with enable_grad():
            loss = float(closure())
        self.func_evals += 1
        g = self._grad.copy()
        if self._active is not None:
            g[~self._active] = 0
        return loss, g

    def _directional(self, closure, x, d):
        """t -> (f, g) at x + t d, leaving the parameters at x afterwards."""
        def evaluate(t):
            np.add(x, t * d, out=self._data, where=self._where())
            result = self._evaluate(closure)
            self._data[...] = x
            return result
        return evaluate

    def _move(self, t, d):
        np.add(self._data, t * d, out=self._data, where=self._where())

    def _where(self):
        """np.add's `where`: the trainable entries (True: all of them)."""
        return True if self._active is None else self._active

    def _trainable_mask(self):
        if all(p.requires_grad for p in self._params):
            return None
        mask = np.zeros(self._data.size, bool)
        for i, p in enumerate(self._params):
            mask[self._offsets[i]:self._offsets[i + 1]] = p.requires_grad
        return mask

    def step(self, closure=None):
        """Minimise with up to max_iter iterations, calling `closure` as needed; returns
        the loss of its first evaluation."""
        if closure is None:
            raise TypeError(f"{type(self).__name__}.step needs a closure that re-evaluates the "
                            "loss: opt.step(closure) (see cygrad.optim.LBFGS)")
        self._check_fresh()
        self._check_group(self._group)
        self._active = self._trainable_mask()
        self.step_count += 1
        try:
            return self._step(closure)
        finally:
            bump_versions(self._params)

    # -- state_dict: the history as torch's LBFGS keeps it (state of parameter 0) -------
    def _state_entries(self):
        return {0: {name: _saved(getattr(self, name), kind) for name, kind in self._history}}

    def _loaded_entries(self, saved_state, order):
        entry = dict(saved_state.get(0, saved_state.get("0", {})))
        values = {}
        for name, kind in self._history:
            if name not in entry:
                raise ValueError(f"the state dict lacks {type(self).__name__}'s history {name!r}")
            values[name] = _loaded(entry.pop(name), kind, self._data, name)
        if entry:
            raise ValueError(f"{sorted(entry)} are not in {type(self).__name__}'s history")
        return values

    def _check_complete(self, groups, entries):
        pass

    def _restore(self, entries):
        for name, value in entries.items():
            setattr(self, name, value)


def _saved(value, kind):
    """A history entry as plain data: arrays copied, a list of vectors as a 2-D array."""
    if value is None:
        return None
    if kind == VECTORS:
        return np.array(value) if value else np.zeros((0, 0))
    if kind in (VECTOR, FLOATS):
        return np.array(value, dtype=np.float64 if kind == FLOATS else None)
    return int(value) if kind == INT else float(value)


def _loaded(value, kind, like, name):
    """A saved history entry back as the optimizer keeps it (vectors in the dtype of
    the flat buffer `like`), its size checked."""
    if value is None:
        return [] if kind in (VECTORS, FLOATS) else None
    if kind in (INT, FLOAT):
        return int(value) if kind == INT else float(value)
    a = np.array(value, dtype=np.float64 if kind == FLOATS else like.dtype)
    if kind == FLOATS:
        return [float(v) for v in a.reshape(-1)]
    if kind == VECTOR and a.shape != like.shape:
        raise ValueError(f"history {name!r} has shape {a.shape}, the parameters {like.shape}")
    if kind == VECTORS:
        if a.size == 0:
            return []
        if a.ndim != 2 or a.shape[1] != like.size:
            raise ValueError(f"history {name!r} has shape {a.shape}, expected (k, {like.size})")
        return [row.copy() for row in a]
    return a


class LBFGS(_ClosureOptimizer):
    """torch.optim.LBFGS: same arguments, defaults and algorithm (two-loop recursion over
    the last `history_size` curvature pairs, first step min(1, 1/|g|_1) * lr, optional
    strong Wolfe line search, the same stopping tests), so float64 iterates match torch's.

    One `step(closure)` runs up to `max_iter` iterations and `max_eval` closure calls
    (default max_iter * 5 // 4); the history carries over to the next step. Returns the
    loss of the first evaluation, as torch does.
    """

    _history = _ClosureOptimizer._history + (
        ("d", VECTOR), ("t", FLOAT), ("old_dirs", VECTORS), ("old_stps", VECTORS), ("ro", FLOATS),
        ("H_diag", FLOAT), ("prev_flat_grad", VECTOR), ("prev_loss", FLOAT))

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        super().__init__(params, dict(lr=float(lr), max_iter=int(max_iter), max_eval=int(max_eval),
                                      tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change,
                                      history_size=int(history_size),
                                      line_search_fn=line_search_fn))
        self.d = self.t = self.prev_flat_grad = self.prev_loss = None
        self.old_dirs, self.old_stps, self.ro, self.H_diag = [], [], [], 1.0

    def _direction(self, g):
        """-H g by the two-loop recursion, H the L-BFGS inverse-Hessian approximation."""
        q = -g
        al = [0.0] * len(self.old_dirs)
        for i in range(len(self.old_dirs) - 1, -1, -1):
            al[i] = float(np.dot(self.old_stps[i], q)) * self.ro[i]
            q -= al[i] * self.old_dirs[i]
        r = q * self.H_diag
        for i in range(len(self.old_dirs)):
            be_i = float(np.dot(self.old_dirs[i], r)) * self.ro[i]
            r += (al[i] - be_i) * self.old_stps[i]
        return r

    def _remember(self, g):
        """Add the pair (s, y) = (t d, g - g_prev) when it has positive curvature y.s."""
        y = g - self.prev_flat_grad
        s = self.d * self.t
        ys = float(np.dot(y, s))
        if ys > 1e-10:
            if len(self.old_dirs) == self._group["history_size"]:
                del self.old_dirs[0], self.old_stps[0], self.ro[0]
            self.old_dirs.append(y)
            self.old_stps.append(s)
            self.ro.append(1.0 / ys)
            self.H_diag = ys / float(np.dot(y, y))  # scale of the initial inverse Hessian

    def _step(self, closure):
        h = self._group
        lr, max_iter, max_eval = h["lr"], h["max_iter"], h["max_eval"]
        tol_grad, tol_change = h["tolerance_grad"], h["tolerance_change"]
        loss, g = self._evaluate(closure)
        orig_loss, evals = loss, 1
        if np.abs(g).max() <= tol_grad:
            return orig_loss
        for it in range(1, max_iter + 1):
            self.n_iter += 1
            if self.n_iter == 1:
                self.d = -g
                self.old_dirs, self.old_stps, self.ro, self.H_diag = [], [], [], 1.0
            else:
                self._remember(g)
                self.d = self._direction(g)
            self.prev_flat_grad = g.copy()
            self.prev_loss = loss
            # first ever step: scaled so that it moves at most lr in the L1 norm
            t = min(1.0, 1.0 / float(np.abs(g).sum())) * lr if self.n_iter == 1 else lr
            d, self.t = self.d, t
            gtd = float(np.dot(g, d))
            if gtd > -tol_change:  # not a descent direction any more
                break
            ls_evals = 0
            if h["line_search_fn"] is not None:
                x = self._data.copy()
                loss, g, t, ls_evals = strong_wolfe(self._directional(closure, x, d), d, loss, g,
                                                    gtd, t, max_ls=max_eval - evals)
                self._move(t, d)
                opt_cond = np.abs(g).max() <= tol_grad
            else:
                self._move(t, d)
                opt_cond = False
                if it != max_iter:  # the last iteration's loss would be wasted
                    loss, g = self._evaluate(closure)
                    opt_cond = np.abs(g).max() <= tol_grad
                    ls_evals = 1
            self.t = t
            evals += ls_evals
            if it == max_iter or evals >= max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tol_change or abs(loss - self.prev_loss) < tol_change:
                break  # no progress
        return orig_loss


class ConjugateGradient(_ClosureOptimizer):
    """Nonlinear conjugate gradient: d = -g + beta d_prev, with
    beta = g.(g - g_prev) / |g_prev|^2 (Polak-Ribiere, clipped at 0: PR+) or
    |g|^2 / |g_prev|^2 (Fletcher-Reeves), and a strong Wolfe line search (c2 = 0.1 as
    Nocedal & Wright advise for CG). Restarts with -g when d is not a descent direction or
    every `restart` iterations (default: the number of parameters).

    One `step(closure)` runs up to `max_iter` iterations, stopping as LBFGS does
    (|g|_inf <= tolerance_grad, or changes below tolerance_change). The first step is
    min(1, 1/|g|_1) * lr; later ones start from the previous step scaled by
    g_prev.d_prev / g.d (line_search=None: every step is lr). Returns the first loss.
    """

    _history = _ClosureOptimizer._history + (
        ("d", VECTOR), ("prev_grad", VECTOR), ("prev_t", FLOAT), ("prev_gtd", FLOAT))

    def __init__(self, params, lr=1.0, beta="polak-ribiere", line_search="strong_wolfe",
                 max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 c2=0.1, restart=None):
        if beta not in ("polak-ribiere", "fletcher-reeves"):
            raise ValueError(f"beta must be 'polak-ribiere' or 'fletcher-reeves', got {beta!r}")
        if line_search not in ("strong_wolfe", None):
            raise ValueError(f"line_search must be 'strong_wolfe' or None, got {line_search!r}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4 if line_search is None else max_iter * 25
        if not 0.0 < c2 < 1.0:
            raise ValueError(f"c2 must be in (0, 1), got {c2}")
        super().__init__(params, dict(lr=float(lr), beta=beta, line_search=line_search,
                                      max_iter=int(max_iter), max_eval=int(max_eval),
                                      tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, c2=float(c2),
                                      restart=restart))
        self.d = self.prev_grad = None
        self.prev_t = self.prev_gtd = None

    def _beta(self, g):
        gg_prev = float(np.dot(self.prev_grad, self.prev_grad))
        if self._group["beta"] == "fletcher-reeves":
            return float(np.dot(g, g)) / gg_prev
        return max(0.0, float(np.dot(g, g - self.prev_grad)) / gg_prev)

    def _step(self, closure):
        h = self._group
        tol_grad, tol_change = h["tolerance_grad"], h["tolerance_change"]
        restart = h["restart"] or self._data.size
        loss, g = self._evaluate(closure)
        orig_loss, evals = loss, 1
        for _ in range(h["max_iter"]):
            if np.abs(g).max() <= tol_grad:
                break
            restarting = self.n_iter % restart == 0
            self.d = -g if restarting else -g + self._beta(g) * self.d
            gtd = float(np.dot(g, self.d))
            if gtd >= 0:  # lost conjugacy: steepest descent again
                self.d, gtd = -g, -float(np.dot(g, g))
            if h["line_search"] is None:
                t = h["lr"]
            elif self.n_iter and self.prev_t > 0:
                t = self.prev_t * self.prev_gtd / gtd  # same first-order change as last time
            else:  # first step (or after a failed search): move at most lr in the L1 norm
                t = min(1.0, 1.0 / float(np.abs(g).sum())) * h["lr"]
            self.n_iter += 1
            self.prev_grad, prev_loss = g, loss
            if h["line_search"] is not None:
                x = self._data.copy()
                loss, g, t, ls_evals = strong_wolfe(self._directional(closure, x, self.d),
                                                    self.d, loss, g, gtd, t, c2=h["c2"],
                                                    tolerance_change=tol_change,
                                                    max_ls=min(25, max(h["max_eval"] - evals, 1)))
                self._move(t, self.d)
            else:
                self._move(t, self.d)
                loss, g = self._evaluate(closure)
                ls_evals = 1
            self.prev_t, self.prev_gtd = t, gtd
            evals += ls_evals
            if evals >= h["max_eval"] or np.abs(g).max() <= tol_grad:
                break
            if np.abs(self.d * t).max() <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        return orig_loss


class Newton(_ClosureOptimizer):
    """Newton's method for small full-batch problems: solve H d = -g by a Cholesky
    factorisation, H = hessian_fn(x) the (n, n) Hessian at the flat parameter vector x
    (read-only). When H is not positive definite, H + tau I is factorised instead with
    tau increased tenfold from 1e-3 * max|H_ii| until it is (Nocedal & Wright, Alg. 3.3),
    so d is always a descent direction. The step t starts at lr and is halved until the
    Armijo condition holds (line_search='armijo'; None takes t = lr).

    One `step(closure)` runs up to `max_iter` iterations, stopping when |g|_inf <=
    tolerance_grad or the changes fall below tolerance_change. Returns the first loss.
    """

    _history = _ClosureOptimizer._history + (("damping", FLOAT),)

    def __init__(self, params, hessian_fn, lr=1.0, max_iter=20, tolerance_grad=1e-7,
                 tolerance_change=1e-9, line_search="armijo"):
        if not callable(hessian_fn):
            raise TypeError("hessian_fn must be callable: x (flat parameters) -> (n, n) Hessian")
        if line_search not in ("armijo", None):
            raise ValueError(f"line_search must be 'armijo' or None, got {line_search!r}")
        super().__init__(params, dict(lr=float(lr), max_iter=int(max_iter),
                                      tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, line_search=line_search))
        self.hessian_fn = hessian_fn  # not in state_dict (a function), as LambdaLR's lambdas
        self.damping = 0.0  # the tau of the last factorisation

    def hessian(self):
        """hessian_fn at the flat parameters (read-only), its shape checked."""
        n = self._data.size
        view = self._data.view()
        view.flags.writeable = False
        H = np.asarray(self.hessian_fn(view), dtype=np.float64)
        if H.shape != (n, n):
            raise ValueError(f"hessian_fn returned shape {H.shape}, expected ({n}, {n}) "
                             "for the flat parameter vector")
        return H

    def direction(self, H, g):
        """d with (H + tau I) d = -g, tau >= 0 the smallest tried that makes it positive definite."""
        tau, beta = 0.0, 1e-3 * max(float(np.abs(np.diag(H)).max()), 1e-8)
        if np.diag(H).min() <= 0:
            tau = beta - float(np.diag(H).min())
        eye = np.eye(H.shape[0])
        while True:
            try:
                L = np.linalg.cholesky(H + tau * eye if tau else H)
                break
            except np.linalg.LinAlgError:
                tau = max(10.0 * tau, beta)
        self.damping = tau
        z = _solve_triangular(L, -np.asarray(g, np.float64), lower=True)
        return _solve_triangular(L.T, z, lower=False)

    def _newton_direction(self, g):
        """The Newton direction in the trainable coordinates (H restricted to them: the
        frozen ones are constants of the problem), 0 in the frozen ones."""
        H = self.hessian()
        if self._active is None:
            return self.direction(H, g)
        idx = np.flatnonzero(self._active)
        d = np.zeros(g.size)
        d[idx] = self.direction(H[np.ix_(idx, idx)], g[idx])
        return d

    def _step(self, closure):
        h = self._group
        tol_grad, tol_change = h["tolerance_grad"], h["tolerance_change"]
        loss, g = self._evaluate(closure)
        orig_loss = loss
        for _ in range(h["max_iter"]):
            if np.abs(g).max() <= tol_grad:
                break
            self.n_iter += 1
            d = self._newton_direction(g).astype(self._data.dtype)
            gtd = float(np.dot(g, d))
            prev_loss = loss
            if h["line_search"] == "armijo":
                x = self._data.copy()
                loss, g, t, _ = armijo_backtracking(self._directional(closure, x, d), d, loss,
                                                    g, gtd, h["lr"])
                self._move(t, d)
            else:
                t = h["lr"]
                self._move(t, d)
                loss, g = self._evaluate(closure)
            if np.abs(d * t).max() <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        return orig_loss


def _solve_triangular(L, b, lower):
    """Solve L x = b for triangular L (scipy's routine when present, else NumPy's solve)."""
    try:
        from scipy.linalg import solve_triangular
    except ImportError:
        return np.linalg.solve(L, b)
    return solve_triangular(L, b, lower=lower)


__all__ = ["LBFGS", "ConjugateGradient", "Newton"]

"""Line searches along a direction d from a point x: strong Wolfe (bracket + zoom with cubic
interpolation, the algorithm of torch.optim.LBFGS / torch7's lswolfe.lua, so LBFGS iterates
match torch's) and Armijo backtracking.

`evaluate(t)` returns (f(x + t d), grad f(x + t d)) as (float, 1-D float array); `f`, `g`
and `gtd` = g.d describe the start point (t = 0).
"""
import math

import numpy as np


def cubic_minimizer(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, slope g2), clamped to
    `bounds` (default [min(x1, x2), max(x1, x2)]); the midpoint when the cubic has none."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        t = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        t = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(t, lo), hi)


class _Point:
    """One trial step: t, f(x + t d), its gradient and the slope g.d along d."""

    __slots__ = ("t", "f", "g", "gtd")

    def __init__(self, t, f, g, gtd):
        self.t, self.f, self.g, self.gtd = t, f, g, gtd


def strong_wolfe(evaluate, d, f, g, gtd, t, *, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                 max_ls=25):
    """Find t with f(x+td) <= f + c1 t g.d (sufficient decrease) and |g(x+td).d| <= c2 |g.d|
    (curvature). Returns (f_new, g_new, t, evaluations).

    Phase 1 grows t (cubic extrapolation within [t + 0.01 (t - t_prev), 10 t]) until an
    interval brackets an acceptable point; phase 2 (zoom) shrinks the bracket by cubic
    interpolation, with torch's safeguard against steps too close to an end. At most
    `max_ls` evaluations after the first.
    """
    d_norm = float(np.abs(d).max())
    start = _Point(0.0, f, g.copy(), gtd)
    new = _Point(t, *_probe(evaluate, t, d))
    evals, ls_iter, done = 1, 0, False
    prev = start
    bracket = None
    while ls_iter < max_ls:
        if new.f > f + c1 * new.t * gtd or (ls_iter > 1 and new.f >= prev.f):
            bracket = [prev, new]
            break
        if abs(new.gtd) <= -c2 * gtd:
            bracket, done = [new], True
            break
        if new.gtd >= 0:
            bracket = [prev, new]
            break
        # still descending: extrapolate to a longer step
        t = cubic_minimizer(prev.t, prev.f, prev.gtd, new.t, new.f, new.gtd,
                            bounds=(new.t + 0.01 * (new.t - prev.t), new.t * 10))
        prev = new
        new = _Point(t, *_probe(evaluate, t, d))
        evals += 1
        ls_iter += 1
    if ls_iter == max_ls:
        bracket = [start, new]

    # zoom: keep bracket[low] the best point so far and shrink towards the other end
    insufficient = False
    low, high = (0, 1) if bracket[0].f <= bracket[-1].f else (1, 0)
    while not done and ls_iter < max_ls:
        a, b = bracket[0], bracket[1]
        if abs(b.t - a.t) * d_norm < tolerance_change:
            break
        t = cubic_minimizer(a.t, a.f, a.gtd, b.t, b.f, b.gtd)
        # a step within 10% of the bracket's width from an end makes little progress:
        # the second time in a row (or outside the bracket) move it to 10% inside
        left, right = min(a.t, b.t), max(a.t, b.t)
        eps = 0.1 * (right - left)
        if min(right - t, t - left) < eps:
            if insufficient or t >= right or t <= left:
                t = right - eps if abs(t - right) < abs(t - left) else left + eps
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        new = _Point(t, *_probe(evaluate, t, d))
        evals += 1
        ls_iter += 1
        if new.f > f + c1 * t * gtd or new.f >= bracket[low].f:
            bracket[high] = new
            low, high = (0, 1) if bracket[0].f <= bracket[1].f else (1, 0)
        else:
            if abs(new.gtd) <= -c2 * gtd:
                done = True
            elif new.gtd * (bracket[high].t - bracket[low].t) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = new
    best = bracket[low]
    return best.f, best.g, best.t, evals


def _probe(evaluate, t, d):
    f_new, g_new = evaluate(t)
    return float(f_new), g_new, float(np.dot(g_new, d))


def armijo_backtracking(evaluate, d, f, g, gtd, t=1.0, *, c1=1e-4, shrink=0.5, max_ls=40):
    """Largest t in {t, t*shrink, t*shrink^2, ...} with f(x+td) <= f + c1 t g.d.
    Returns (f_new, g_new, t, evaluations); after max_ls failures the last trial."""
    for evals in range(1, max_ls + 1):
        f_new, g_new = evaluate(t)
        f_new = float(f_new)
        if f_new <= f + c1 * t * gtd:
            break
        if evals < max_ls:
            t *= shrink
    return f_new, g_new, t, evals


__all__ = ["strong_wolfe", "armijo_backtracking", "cubic_minimizer"]

"""LBFGS, ConjugateGradient and Newton: Rosenbrock, logistic regression against scipy,
iterates against torch.optim.LBFGS, and standalone Parameters driven by a closure."""
import numpy as np
import pytest

import cygrad as cg
from cygrad.optim.linesearch import cubic_minimizer, strong_wolfe


# -- Rosenbrock f(x) = (1 - x0)^2 + 100 (x1 - x0^2)^2, minimum 0 at (1, 1) ------------
def rosen(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def rosen_grad(x):
    return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


def rosen_hess(x):
    return np.array([[2 - 400 * (x[1] - 3 * x[0] ** 2), -400 * x[0]], [-400 * x[0], 200.0]])


def rosen_problem(start=(-1.2, 1.0)):
    p = cg.nn.Parameter(np.array(start, dtype=np.float64))

    def closure():
        p.grad[...] = rosen_grad(p.data)
        return rosen(p.data)
    return p, closure


TIGHT = dict(tolerance_grad=1e-10, tolerance_change=1e-14)
ROSEN_OPTIMIZERS = {
    "lbfgs": lambda p: cg.optim.LBFGS([p], max_iter=500, **TIGHT),
    "lbfgs-wolfe": lambda p: cg.optim.LBFGS([p], max_iter=500, line_search_fn="strong_wolfe", **TIGHT),
    "cg-pr": lambda p: cg.optim.ConjugateGradient([p], max_iter=2000, **TIGHT),
    "cg-fr": lambda p: cg.optim.ConjugateGradient([p], beta="fletcher-reeves", max_iter=5000, **TIGHT),
    "newton": lambda p: cg.optim.Newton([p], rosen_hess, max_iter=200, **TIGHT),
}


@pytest.mark.parametrize("name", sorted(ROSEN_OPTIMIZERS))
def test_rosenbrock_minimum(name):
    p, closure = rosen_problem()
    opt = ROSEN_OPTIMIZERS[name](p)
    for _ in range(3):
        opt.step(closure)
    np.testing.assert_allclose(p.data, [1.0, 1.0], rtol=0, atol=1e-6)


def test_lbfgs_torch_defaults_stop_early_on_rosenbrock():
    """The reason the tests tighten tolerances: the defaults stop some 1e-5 away."""
    p, closure = rosen_problem()
    opt = cg.optim.LBFGS([p], max_iter=500, line_search_fn="strong_wolfe")
    opt.step(closure)
    assert 1e-7 < np.abs(p.data - 1).max() < 1e-3
    assert opt.hyper["max_eval"] == 625


def test_newton_damps_an_indefinite_hessian():
    # at (0, 1) the Rosenbrock Hessian has a negative eigenvalue: the step must still descend
    p, closure = rosen_problem((0.0, 1.0))
    assert np.linalg.eigvalsh(rosen_hess(p.data)).min() < 0
    opt = cg.optim.Newton([p], rosen_hess, max_iter=1)
    f0 = opt.step(closure)
    assert opt.damping > 0
    assert rosen(p.data) < f0


def test_newton_one_step_on_a_quadratic():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    b = np.array([1.0, -1.0])
    p = cg.nn.Parameter(np.zeros(2))

    def closure():
        p.grad[...] = A @ p.data - b
        return 0.5 * p.data @ A @ p.data - b @ p.data
    cg.optim.Newton([p], lambda x: A, max_iter=1).step(closure)
    np.testing.assert_allclose(p.data, np.linalg.solve(A, b), rtol=1e-14)


# -- logistic regression with an L2 penalty, on cygrad.nn in float64 ---------------------
LAM = 1e-2


def logistic_problem(n=200, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    w_true = rng.standard_normal(features)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ w_true + 0.5)))).astype(np.float64)
    model = cg.nn.Sequential(cg.nn.Linear(features, 1, dtype=np.float64, rng=np.random.default_rng(1)))
    loss_fn = cg.nn.BCEWithLogitsLoss()
    opt_params = model.parameters()
    data, grad = model.flat_buffers()   # [weight (1, features), bias]

    def closure():
        logits = model(x)
        loss = loss_fn(logits, y[:, None]) + 0.5 * LAM * float(data @ data)
        model.zero_grad()
        loss.backward()
        grad[...] += LAM * data
        return loss

    x1 = np.hstack([x, np.ones((n, 1))])

    def hessian(w):
        p = 1 / (1 + np.exp(-(x1 @ w)))
        return (x1.T * (p * (1 - p))) @ x1 / n + LAM * np.eye(w.size)

    def fun(w):  # the same objective for scipy: (loss, gradient)
        z = x1 @ w
        loss = np.mean(np.logaddexp(0, z) - y * z) + 0.5 * LAM * w @ w
        return loss, x1.T @ (1 / (1 + np.exp(-z)) - y) / n + LAM * w

    return opt_params, closure, hessian, fun, data.copy()


SCIPY_METHOD = {"lbfgs": "L-BFGS-B", "cg": "CG", "newton": "Newton-CG"}


@pytest.mark.parametrize("name", sorted(SCIPY_METHOD))
def test_logistic_regression_agrees_with_scipy(name):
    optimize = pytest.importorskip("scipy.optimize")
    params, closure, hessian, fun, w0 = logistic_problem()
    opt = {"lbfgs": lambda: cg.optim.LBFGS(params, line_search_fn="strong_wolfe", max_iter=200),
           "cg": lambda: cg.optim.ConjugateGradient(params, max_iter=500),
           "newton": lambda: cg.optim.Newton(params, hessian)}[name]()
    opt.step(closure)
    ours = closure()
    hess = {"hess": lambda w: hessian(w)} if name == "newton" else {}
    ref = optimize.minimize(fun, w0, jac=True, method=SCIPY_METHOD[name], tol=1e-12, **hess)
    assert abs(ours - ref.fun) < 1e-6
    assert abs(ours - fun(opt.data)[0]) < 1e-12  # the closure and scipy's function agree


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_matches_torch_iterates(line_search_fn):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    model = cg.nn.Sequential(cg.nn.Linear(4, 3, dtype=np.float64, rng=np.random.default_rng(0)))
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 3)).double()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    loss_fn, tloss_fn = cg.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    kw = dict(lr=0.5, max_iter=4, history_size=3, line_search_fn=line_search_fn)
    opt = cg.optim.LBFGS(model.parameters(), **kw)
    topt = torch.optim.LBFGS(tmodel.parameters(), **kw)

    def closure():
        loss = loss_fn(model(x), y)
        model.zero_grad()
        loss.backward()
        return loss

    def tclosure():
        topt.zero_grad()
        loss = tloss_fn(tmodel(tx), ty)
        loss.backward()
        return loss

    for _ in range(6):  # the history carries over from one step to the next, as torch's
        ours, theirs = opt.step(closure), float(topt.step(tclosure).detach())
        assert ours == pytest.approx(theirs, rel=1e-12)
        for k, v in model.state_dict().items():
            np.testing.assert_allclose(v, tmodel.state_dict()[k].numpy(), rtol=1e-10, atol=1e-12)
    assert opt.func_evals == topt.state[next(iter(tmodel.parameters()))]["func_evals"]


# -- standalone Parameters -----------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda ps: cg.optim.SGD(ps, lr=0.1), lambda ps: cg.optim.Adam(ps, lr=0.1),
    lambda ps: cg.optim.LBFGS(ps), lambda ps: cg.optim.ConjugateGradient(ps),
    lambda ps: cg.optim.Newton(ps, lambda w: 2 * np.eye(w.size))])
def test_standalone_parameters_with_any_optimizer(make):
    """f(a, b) = |a - 1|^2 + |b + 2|^2 over two separate arrays, each a Parameter."""
    a, b = cg.nn.Parameter(np.zeros((2, 2))), cg.nn.Parameter(np.zeros(3))
    opt = make([a, b])

    def closure():
        a.grad[...] = 2 * (a.data - 1)
        b.grad[...] = 2 * (b.data + 2)
        return float(((a.data - 1) ** 2).sum() + ((b.data + 2) ** 2).sum())

    if isinstance(opt, (cg.optim.SGD, cg.optim.Adam)):
        for _ in range(300):   # first-order optimizers: evaluate, then step
            closure()
            opt.step()
    else:
        opt.step(closure)
    np.testing.assert_allclose(a.data, 1.0, atol=1e-4)
    np.testing.assert_allclose(b.data, -2.0, atol=1e-4)
    assert np.shares_memory(a.data, opt.data) and np.shares_memory(b.grad, opt.grad)


def test_closure_may_rebind_grad():
    p = cg.nn.Parameter(np.zeros(3))
    opt = cg.optim.LBFGS([p], line_search_fn="strong_wolfe")

    def closure():
        p.grad = 2 * (p.data - 3)   # a new array: its values are taken into the flat buffer
        return float(((p.data - 3) ** 2).sum())
    opt.step(closure)
    np.testing.assert_allclose(p.data, 3.0, atol=1e-8)
    assert np.shares_memory(p.grad, opt.grad)


def test_step_needs_a_closure_and_groups_are_refused():
    p, _ = rosen_problem()
    opt = cg.optim.LBFGS([p])
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    q = cg.nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="parameter groups"):
        cg.optim.LBFGS([{"params": [p]}, {"params": [q]}])
    with pytest.raises(ValueError, match="parameter groups"):
        opt.add_param_group({"params": [q]})


RESUMABLE = {
    "lbfgs": lambda p: cg.optim.LBFGS([p], max_iter=7, history_size=4, **TIGHT),
    "lbfgs-wolfe": lambda p: cg.optim.LBFGS([p], max_iter=7, line_search_fn="strong_wolfe",
                                            **TIGHT),
    "cg-pr": lambda p: cg.optim.ConjugateGradient([p], max_iter=7, **TIGHT),
    "cg-fr-fixed": lambda p: cg.optim.ConjugateGradient([p], beta="fletcher-reeves",
                                                         line_search=None, lr=1e-3, max_iter=7,
                                                         **TIGHT),
    "newton": lambda p: cg.optim.Newton([p], rosen_hess, max_iter=3, **TIGHT),
}


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_state_dict_resumes_the_search_identically(name):
    """Stop after two steps, load the history into a fresh optimizer: the next steps
    repeat the uninterrupted run bit for bit."""
    p, closure = rosen_problem()
    opt = RESUMABLE[name](p)
    for _ in range(2):
        opt.step(closure)
    sd = opt.state_dict()
    assert sd["type"] == type(opt).__name__ and set(sd["state"]) == {0}
    assert sd["state"][0]["n_iter"] == opt.n_iter > 0
    q, closure_q = rosen_problem(tuple(p.data))
    resumed = RESUMABLE[name](q)
    resumed.load_state_dict(sd)
    for _ in range(2):
        opt.step(closure)
        resumed.step(closure_q)
    assert np.array_equal(p.data, q.data) and resumed.func_evals == opt.func_evals
    assert resumed.step_count == opt.step_count == 4


def test_lbfgs_history_shapes_and_errors():
    p, closure = rosen_problem()
    opt = cg.optim.LBFGS([p], history_size=3)
    empty = opt.state_dict()["state"][0]
    assert empty["d"] is None and empty["old_dirs"].shape == (0, 0)
    opt.step(closure)
    state = opt.state_dict()["state"][0]
    assert state["old_dirs"].shape == (3, 2) and len(state["ro"]) == 3
    assert state["prev_flat_grad"].shape == (2,) and isinstance(state["t"], float)
    other = cg.optim.LBFGS([cg.nn.Parameter(np.zeros(3))])
    with pytest.raises(ValueError, match=r"'d' has shape \(2,\), the parameters \(3,\)"):
        other.load_state_dict(opt.state_dict())
    bad = opt.state_dict()
    bad["state"][0]["old_dirs"] = np.zeros((3, 5))
    with pytest.raises(ValueError, match="old_dirs"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="LBFGS"):
        cg.optim.ConjugateGradient([p]).load_state_dict(opt.state_dict())


@pytest.mark.parametrize("make", [
    lambda ps: cg.optim.LBFGS(ps, line_search_fn="strong_wolfe", max_iter=50),
    lambda ps: cg.optim.ConjugateGradient(ps, max_iter=50),
    lambda ps: cg.optim.Newton(ps, lambda w: 2 * np.eye(5) + 1, max_iter=50)])
def test_a_frozen_parameter_does_not_move(make):
    """f = |a - 1|^2 + |b + 2|^2 + 0.5 (sum a + b)^2 with b frozen: a alone is optimised."""
    a, b = cg.nn.Parameter(np.zeros(2)), cg.nn.Parameter(np.full(3, 0.25))
    b.requires_grad = False
    opt = make([a, b])

    def closure():
        s = a.data.sum() + b.data.sum()
        a.grad[...] = 2 * (a.data - 1) + s
        b.grad[...] = 2 * (b.data + 2) + s  # written anyway: the optimizer must ignore it
        return float(((a.data - 1) ** 2).sum() + ((b.data + 2) ** 2).sum() + 0.5 * s * s)
    opt.step(closure)
    assert np.array_equal(b.data, np.full(3, 0.25))
    # minimum over a with b fixed: 2 (a_i - 1) + sum(a) + 0.75 = 0 -> a_i = (2 - 0.75) / 4
    np.testing.assert_allclose(a.data, 1.25 / 4, atol=1e-6)


@pytest.mark.parametrize("make, match", [
    (lambda p: cg.optim.LBFGS([p], line_search_fn="armijo"), "line_search_fn"),
    (lambda p: cg.optim.ConjugateGradient([p], beta="hestenes"), "beta"),
    (lambda p: cg.optim.ConjugateGradient([p], line_search="exact"), "line_search"),
    (lambda p: cg.optim.Newton([p], hessian_fn=None), "hessian_fn"),
    (lambda p: cg.optim.LBFGS([p], lr=-1), "lr")])
def test_bad_arguments(make, match):
    p, _ = rosen_problem()
    with pytest.raises((ValueError, TypeError), match=match):
        make(p)


def test_newton_checks_the_hessian_shape():
    p, closure = rosen_problem()
    with pytest.raises(ValueError, match="hessian_fn returned shape"):
        cg.optim.Newton([p], lambda w: np.eye(3)).step(closure)


# -- line search ---------------------------------------------------------------------------
def test_cubic_minimizer_is_exact_on_a_cubic():
    f = lambda t: (t - 0.3) ** 2 * (t + 2)   # local minimum at 0.3
    df = lambda t: 2 * (t - 0.3) * (t + 2) + (t - 0.3) ** 2
    assert cubic_minimizer(0.0, f(0.0), df(0.0), 1.0, f(1.0), df(1.0)) == pytest.approx(0.3)


def test_strong_wolfe_conditions_hold():
    p, closure = rosen_problem()
    x = p.data.copy()
    g = rosen_grad(x)
    d = -g
    f_new, g_new, t, evals = strong_wolfe(lambda t: (rosen(x + t * d), rosen_grad(x + t * d)),
                                          d, rosen(x), g, g @ d, 1.0)
    assert f_new <= rosen(x) + 1e-4 * t * (g @ d)
    assert abs(g_new @ d) <= 0.9 * abs(g @ d)
    assert f_new == rosen(x + t * d) and evals >= 2

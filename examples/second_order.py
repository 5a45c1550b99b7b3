"""Second-order methods against gradient descent: Newton's method (Cholesky solve of
H d = -g), nonlinear conjugate gradient and L-BFGS, on the Rosenbrock function and on
L2-regularised logistic regression separating two MNIST digits (3 vs 8 by default).

    python examples/second_order.py [--data DIR] [--digits 3 8] [--threads 2] [--quick]
"""
import argparse
import time

import numpy as np

import cygrad as cg
from _common import check, mnist_or_exit, subset


def rosenbrock(x):
    a, b = 1 - x[0], x[1] - x[0] ** 2
    return a * a + 100 * b * b, np.array([-2 * a - 400 * x[0] * b, 200 * b])


def rosenbrock_hessian(x):
    return np.array([[2 - 400 * (x[1] - 3 * x[0] ** 2), -400 * x[0]], [-400 * x[0], 200.0]])


TIGHT = dict(tolerance_grad=1e-10, tolerance_change=1e-14)


def rosenbrock_race():
    print("Rosenbrock from (-1.2, 1): iterations and function evaluations to reach (1, 1)")
    makers = {
        "gradient descent": lambda p: cg.optim.SGD(p, lr=1e-3),
        "conjugate gradient": lambda p: cg.optim.ConjugateGradient(p, max_iter=1000, **TIGHT),
        "L-BFGS": lambda p: cg.optim.LBFGS(p, max_iter=1000, line_search_fn="strong_wolfe", **TIGHT),
        "Newton": lambda p: cg.optim.Newton(p, rosenbrock_hessian, max_iter=100, **TIGHT),
    }
    errors = {}
    for name, make in makers.items():
        p = cg.nn.Parameter(np.array([-1.2, 1.0]))
        opt = make([p])

        def closure():
            loss, p.grad[...] = rosenbrock(p.data)
            return loss
        if isinstance(opt, cg.optim.SGD):
            iters = 0
            while np.abs(p.data - 1).max() > 1e-6 and iters < 100000:
                closure()
                opt.step()
                iters += 1
            evals = iters
        else:
            opt.step(closure)
            iters, evals = opt.n_iter, opt.func_evals
        errors[name] = np.abs(p.data - 1).max()
        print(f"  {name:20s} {iters:7d} iterations {evals:7d} evaluations   |x - (1, 1)| = {errors[name]:.1e}")
    return errors


def logistic_problem(x, y, lam):
    """cygrad model, closure (mean BCE + lam/2 |w|^2) and the exact Hessian."""
    n, features = x.shape
    model = cg.nn.Sequential(cg.nn.Linear(features, 1, dtype=np.float64, rng=np.random.default_rng(0)))
    model[0].weight.data[...] = 0
    model[0].bias.data[...] = 0
    loss_fn = cg.nn.BCEWithLogitsLoss()
    w, grad = model.flat_buffers()          # [weights..., bias]
    target = y[:, None].astype(np.float64)

    def closure():
        loss = loss_fn(model(x), target) + 0.5 * lam * float(w @ w)
        model.zero_grad()
        loss.backward()
        grad[...] += lam * w
        return loss

    x1 = np.hstack([x, np.ones((n, 1))])    # the bias is the last parameter

    def hessian(w):
        p = 1 / (1 + np.exp(-(x1 @ w)))
        return (x1.T * (p * (1 - p))) @ x1 / n + lam * np.eye(w.size)

    return model, closure, hessian


def lipschitz(x, lam, iterations=50):
    """L = |X1^T X1| / (4 n) + lam bounds the Hessian (power iteration): GD's step is 1/L."""
    x1 = np.hstack([x, np.ones((len(x), 1))])
    v = np.ones(x1.shape[1])
    for _ in range(iterations):
        v = x1.T @ (x1 @ v)
        v /= np.linalg.norm(v)
    return float(v @ (x1.T @ (x1 @ v))) / (4 * len(x)) + lam


def logistic_race(args):
    x_train, y_train, x_test, y_test = mnist_or_exit(args.data, args.quick)
    a, b = args.digits
    to_float = cg.data.Normalize(dtype=np.float64, shape=(784,))

    def pick(x, y):
        keep = (y == a) | (y == b)
        return to_float(x[keep]), (y[keep] == b).astype(np.int64)
    x_train, y_train = pick(x_train, y_train)
    x_test, y_test = pick(x_test, y_test)
    if args.quick:
        x_train, y_train = subset(x_train, y_train, 1000)
    print(f"\nlogistic regression, digit {a} (0) vs {b} (1): {len(x_train)} training and "
          f"{len(x_test)} test images, 785 parameters, L2 {args.lam}")
    results = {}
    for name in ("Newton", "L-BFGS", "conjugate gradient", "gradient descent"):
        model, closure, hessian = logistic_problem(x_train, y_train, args.lam)
        t0 = time.perf_counter()
        if name == "gradient descent":   # full batch, step 1/L
            opt = cg.optim.SGD(model.parameters(), lr=1 / lipschitz(x_train, args.lam))
            best = results["Newton"][0]
            iters = 0
            while closure() > best + 1e-6 and iters < args.gd_iters:
                opt.step()
                iters += 1
            evals = iters + 1
        else:
            opt = {"Newton": lambda: cg.optim.Newton(model.parameters(), hessian, max_iter=50),
                   "L-BFGS": lambda: cg.optim.LBFGS(model.parameters(), max_iter=1000,
                                                     line_search_fn="strong_wolfe"),
                   "conjugate gradient": lambda: cg.optim.ConjugateGradient(
                       model.parameters(), max_iter=2000)}[name]()
            opt.step(closure)
            iters, evals = opt.n_iter, opt.func_evals
        seconds = time.perf_counter() - t0
        loss = float(closure())
        model.eval()
        with cg.no_grad():
            acc = float(np.mean((model(x_test).data[:, 0] > 0) == y_test))
        results[name] = loss, iters, evals, acc, seconds
    print(f"{'method':20s} {'final loss':>12s} {'iterations':>10s} {'evaluations':>11s} "
          f"{'test acc':>8s} {'seconds':>8s}")
    for name, (loss, iters, evals, acc, seconds) in results.items():
        print(f"{name:20s} {loss:12.8f} {iters:10d} {evals:11d} {acc:8.4f} {seconds:8.2f}")
    return results


def main():
    p = argparse.ArgumentParser(description="Newton, conjugate gradient, L-BFGS vs gradient descent")
    p.add_argument("--data", help="folder with the MNIST IDX files")
    p.add_argument("--digits", type=int, nargs=2, default=(3, 8))
    p.add_argument("--lam", type=float, default=1e-2, help="L2 penalty of the logistic regression")
    p.add_argument("--gd-iters", type=int, default=5000, help="gradient descent's iteration cap")
    p.add_argument("--threads", type=int)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.threads:
        cg.set_num_threads(args.threads)
    if args.quick:
        args.gd_iters = min(args.gd_iters, 100)
    errors = rosenbrock_race()
    if args.quick:
        check(all(errors[m] < 1e-6 for m in ("conjugate gradient", "L-BFGS", "Newton")),
              "conjugate gradient, L-BFGS and Newton reach (1, 1) within 1e-6")
    results = logistic_race(args)
    if args.quick:
        best = results["Newton"][0]
        check(all(abs(results[m][0] - best) < 1e-6 for m in ("L-BFGS", "conjugate gradient")),
              "L-BFGS and conjugate gradient reach Newton's loss within 1e-6")
        check(results["Newton"][1] < 20 and results["Newton"][3] > 0.9,
              f"Newton converges in {results['Newton'][1]} iterations, test accuracy "
              f"{results['Newton'][3]:.4f} > 0.9")


if __name__ == "__main__":
    main()

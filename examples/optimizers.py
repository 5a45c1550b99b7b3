"""SGD, momentum, AdaGrad, RMSProp and Adam on the same problems: an ill-conditioned
quadratic, the Rosenbrock function and (with MNIST) the 784-128-64-10 MLP. Prints how
many iterations (epochs for the MLP) each needs to reach a target loss; --plot FILE
writes the loss curves when matplotlib is installed.

    python examples/optimizers.py [--data DIR] [--epochs 5] [--plot FILE] [--threads 2] [--quick]
"""
import argparse
import time

import numpy as np

import cygrad as cg
from _common import check, mnist_or_exit, subset


# f(x) = (x0^2 + 100 x1^2) / 2: condition number 100, minimum 0 at the origin
def quadratic(x):
    return 0.5 * (x[0] ** 2 + 100 * x[1] ** 2), np.array([x[0], 100 * x[1]])


# Rosenbrock's banana valley, minimum 0 at (1, 1)
def rosenbrock(x):
    a, b = 1 - x[0], x[1] - x[0] ** 2
    return a * a + 100 * b * b, np.array([-2 * a - 400 * x[0] * b, 200 * b])


# problem -> (function, start, target loss, max iterations, {optimizer: factory}); each
# learning rate is about the largest that is stable for that optimizer on that problem
O = cg.optim
PROBLEMS = {
    "quadratic": (quadratic, (1.0, 1.0), 1e-8, 5000, {
        "SGD": lambda p: O.SGD(p, lr=0.019),
        "momentum": lambda p: O.SGD(p, lr=0.01, momentum=0.8),
        "AdaGrad": lambda p: O.Adagrad(p, lr=0.5),
        "RMSProp": lambda p: O.RMSprop(p, lr=0.01),
        "Adam": lambda p: O.Adam(p, lr=0.1)}),
    "rosenbrock": (rosenbrock, (-1.2, 1.0), 1e-6, 50000, {
        "SGD": lambda p: O.SGD(p, lr=1e-3),
        "momentum": lambda p: O.SGD(p, lr=1e-3, momentum=0.9),
        "AdaGrad": lambda p: O.Adagrad(p, lr=0.5),
        "RMSProp": lambda p: O.RMSprop(p, lr=1e-3),
        "Adam": lambda p: O.Adam(p, lr=0.02)}),
}
MLP_OPTIMIZERS = {"SGD": lambda p: O.SGD(p, lr=0.1), "momentum": lambda p: O.SGD(p, lr=0.01, momentum=0.9),
                  "AdaGrad": lambda p: O.Adagrad(p, lr=0.01), "RMSProp": lambda p: O.RMSprop(p, lr=1e-3),
                  "Adam": lambda p: O.Adam(p, lr=1e-3)}


def minimize(fn, start, make_optimizer, target, max_iter):
    """Iterate until fn < target; return (iterations or None, loss curve)."""
    p = cg.nn.Parameter(np.array(start, dtype=np.float64))
    opt = make_optimizer([p])
    curve = []
    for it in range(max_iter + 1):
        loss, grad = fn(p.data)
        curve.append(loss)
        if loss < target:
            return it, curve
        p.grad[...] = grad
        opt.step()
    return None, curve


def mlp_race(data, quick, epochs, target):
    x_train, y_train, x_test, y_test = mnist_or_exit(data, quick)
    if quick:
        x_train, y_train = subset(x_train, y_train, 2000)
        x_test, y_test = subset(x_test, y_test, 500)
    to_float = cg.data.Normalize(shape=(784,))
    train = cg.data.DataLoader(x_train, y_train, 64, seed=0, transform=to_float)
    test = cg.data.DataLoader(x_test, y_test, 1000, shuffle=False, transform=to_float)
    results, curves = {}, {}
    for name, make in MLP_OPTIMIZERS.items():
        model = cg.models.mlp(seed=0)
        h = cg.train.fit(model, cg.nn.CrossEntropyLoss(), make(model.parameters()), train,
                         epochs=epochs, val_loader=test, progress=False)
        reached = next((e for e, l in zip(h["epoch"], h["loss"]) if l < target), None)
        results[name] = reached, h["loss"][-1], h["val_accuracy"][-1], sum(h["seconds"])
        curves[name] = h["loss"]
    print(f"\nMLP 784-128-64-10 on {len(x_train)} MNIST images, batch 64, {epochs} epochs; "
          f"target: training loss < {target}")
    print(f"{'optimizer':10s} {'epochs to target':>16s} {'final loss':>11s} {'test acc':>9s} {'seconds':>8s}")
    for name, (reached, loss, acc, sec) in results.items():
        print(f"{name:10s} {str(reached or '-'):>16s} {loss:11.4f} {acc:9.4f} {sec:8.1f}")
    return results, curves


def plot(curves, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4))
    for ax, (problem, per_opt) in zip(np.atleast_1d(axes), curves.items()):
        for name, curve in per_opt.items():
            ax.semilogy(np.maximum(curve, 1e-16), label=name)
        ax.set(title=problem, xlabel="epoch" if problem == "mlp" else "iteration", ylabel="loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"loss curves written to {path}")


def main():
    p = argparse.ArgumentParser(description="first-order optimizers side by side")
    p.add_argument("--data", help="folder with the MNIST IDX files")
    p.add_argument("--epochs", type=int, default=5, help="MLP epochs per optimizer")
    p.add_argument("--target", type=float, default=0.05, help="MLP training-loss target")
    p.add_argument("--no-mnist", action="store_true", help="only the two test functions")
    p.add_argument("--plot", metavar="FILE")
    p.add_argument("--threads", type=int)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.threads:
        cg.set_num_threads(args.threads)
    curves, iterations = {}, {}
    for problem, (fn, start, target, max_iter, optimizers) in PROBLEMS.items():
        print(f"\n{problem} from {start}: iterations to loss < {target:g} (max {max_iter})")
        curves[problem] = {}
        for name, make in optimizers.items():
            t0 = time.perf_counter()
            it, curves[problem][name] = minimize(fn, start, make, target, max_iter)
            iterations[problem, name] = it
            print(f"  {name:10s} {str(it if it is not None else 'not reached'):>12s}"
                  f"   final loss {curves[problem][name][-1]:.2e}   {time.perf_counter() - t0:.2f} s")
    if not args.no_mnist:
        mlp, curves["mlp"] = mlp_race(args.data, args.quick, 2 if args.quick else args.epochs,
                                      args.target)
    if args.plot:
        plot(curves, args.plot)
    if args.quick:
        quad = {name: iterations["quadratic", name] for name in PROBLEMS["quadratic"][4]}
        check(all(v is not None for v in quad.values()), f"every optimizer reaches the quadratic's target: {quad}")
        check(quad["momentum"] < quad["SGD"], "momentum needs fewer iterations than SGD on the quadratic")
        rosen = {name: iterations["rosenbrock", name] for name in PROBLEMS["rosenbrock"][4]}
        check(rosen["Adam"] is not None and rosen["momentum"] is not None,
              f"Adam and momentum reach the Rosenbrock target: {rosen}")
        if not args.no_mnist:
            check(all(acc > 0.7 for _, _, acc, _ in mlp.values()),
                  "every optimizer trains the MLP past 70 % test accuracy in 2 epochs on 2,000 images")


if __name__ == "__main__":
    main()

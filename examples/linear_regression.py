"""Linear regression h(x) = theta0 + theta1 * x fitted to y = 2x (+ noise) by gradient
descent in the three modes of the source texts, which are just DataLoader batch sizes:

    batch       batch_size = N  one step per epoch on the whole data set
    mini-batch  batch_size = B  N / B steps per epoch
    stochastic  batch_size = 1  one step per sample

with optional L1 (fit's l1: loss + l1 * sum|theta|) and L2 (SGD's weight_decay: loss +
l2/2 * sum theta^2) penalties. Prints theta and the loss per epoch, and writes a
loss-curve PNG with --plot when matplotlib is installed.

    python examples/linear_regression.py [--noise 0.1] [--l1 0] [--l2 0] [--plot FILE] [--quick]
"""
import argparse

import numpy as np

import cygrad as cg
from _common import check

# mode -> (batch size, learning rate, epochs) for N = 100 samples with x in [-1, 1]
MODES = {"batch": (None, 0.5, 40), "mini-batch": (10, 0.1, 20), "stochastic": (1, 0.05, 10)}


def make_data(n=100, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1))
    return x, 2 * x + noise * rng.standard_normal((n, 1))


def fit_line(x, y, mode, *, l1=0.0, l2=0.0, epochs=None, verbose=False):
    """Train h(x) = theta0 + theta1 x with MSE; return (theta0, theta1, history)."""
    batch, lr, default_epochs = MODES[mode]
    loader = cg.data.DataLoader(x, y, batch or len(x), seed=0)
    model = cg.models.linear_regression(dtype=np.float64, seed=0)
    opt = cg.optim.SGD(model.parameters(), lr=lr, weight_decay=l2)
    history = cg.train.fit(model, cg.nn.MSELoss(), opt, loader, epochs=epochs or default_epochs,
                           l1=l1, progress=False)
    theta1, theta0 = float(model[0].weight.data[0, 0]), float(model[0].bias.data[0])
    if verbose:
        print(f"{mode}: batch size {batch or len(x)}, lr {lr}, {len(loader)} steps per epoch")
        for e, loss in zip(history["epoch"], history["loss"]):
            if e <= 5 or e % 5 == 0:
                print(f"  epoch {e:3d}  loss {loss:.3e}")
        print(f"  theta0 = {theta0:+.6f}   theta1 = {theta1:+.6f}")
    return theta0, theta1, history


def plot(histories, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, h in histories.items():
        ax.semilogy(h["epoch"], h["loss"], label=mode)
    ax.set(xlabel="epoch", ylabel="training loss (MSE)", title="h(x) = θ0 + θ1·x on y = 2x")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"loss curves written to {path}")


def main():
    p = argparse.ArgumentParser(description="linear regression by batch / mini-batch / SGD")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--noise", type=float, default=0.1, help="std of the noise added to y")
    p.add_argument("--l1", type=float, default=0.0)
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--plot", metavar="FILE", help="write the loss curves (needs matplotlib)")
    p.add_argument("--quick", action="store_true",
                   help="noise-free, no penalty: assert theta = (0, 2) within 1e-3 in each mode")
    args = p.parse_args()
    noise, l1, l2 = (0.0, 0.0, 0.0) if args.quick else (args.noise, args.l1, args.l2)
    x, y = make_data(args.n, noise)
    print(f"y = 2x + N(0, {noise}^2), {args.n} samples, L1 {l1}, L2 {l2}")
    histories, thetas = {}, {}
    for mode in MODES:
        theta0, theta1, histories[mode] = fit_line(x, y, mode, l1=l1, l2=l2, verbose=True)
        thetas[mode] = theta0, theta1
    # the least-squares answer, for comparison
    exact = np.linalg.lstsq(np.hstack([np.ones_like(x), x]), y[:, 0], rcond=None)[0]
    print(f"least squares: theta0 = {exact[0]:+.6f}   theta1 = {exact[1]:+.6f}")
    if args.plot:
        plot(histories, args.plot)
    if args.quick:
        for mode, (theta0, theta1) in thetas.items():
            check(abs(theta0) < 1e-3 and abs(theta1 - 2) < 1e-3,
                  f"{mode}: theta0 = {theta0:+.6f}, theta1 = {theta1:+.6f} within 1e-3 of (0, 2)")


if __name__ == "__main__":
    main()

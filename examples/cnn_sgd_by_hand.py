"""The CNN trained with plain SGD, its two derivatives written out by hand in NumPy:

    d cross_entropy / d logits = (softmax(logits) - one_hot(y)) / N
    d relu(x) / d x            = (x > 0)

Every step compares them with what cygrad's kernels compute (CrossEntropyLoss.backward,
ReLU.backward), then uses the hand-written ones; the update is w <- w - lr * grad over
the model's flat parameter buffer.

    python examples/cnn_sgd_by_hand.py [--data DIR] [--epochs 1] [--threads 2] [--quick]
"""
import argparse
import time

import numpy as np

import cygrad as cg
from _common import check, mnist_or_exit, subset


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def train_step(model, x, y, lr, rtol):
    """Forward, hand-written backward checked against cygrad's, SGD update; returns
    (loss, largest relative difference between hand-written and kernel gradients)."""
    inputs = []                       # the input of every layer, for the ReLU derivative
    for layer in model:
        inputs.append(x)
        x = layer(x)
    logits = x
    loss_fn = cg.nn.CrossEntropyLoss()
    loss = loss_fn(logits, y)

    n = logits.shape[0]
    one_hot = np.eye(logits.shape[1], dtype=logits.dtype)[y]
    grad = (softmax(logits) - one_hot) / n              # d loss / d logits
    # entries are (p - y) / n with p in [0, 1]: compare on the scale 1/n (float32 rounding
    # of p is absolute, so a confident batch's tiny gradients must not be judged relatively)
    worst = _compare(grad, loss_fn.backward(), rtol, "cross-entropy gradient", floor=1.0 / n)

    model.zero_grad()
    for layer, x_in in zip(reversed(list(model)), reversed(inputs)):
        kernel_grad = layer.backward(grad)              # also fills the layer's .grad
        if isinstance(layer, cg.nn.ReLU):
            grad = grad * (x_in > 0)                    # d loss / d x through the ReLU
            worst = max(worst, _compare(grad, kernel_grad, rtol, "ReLU derivative"))
        else:
            grad = kernel_grad
    data, grads = model.flat_buffers()
    data -= lr * grads                                  # plain SGD
    return loss, worst


def _compare(mine, theirs, rtol, what, floor=1e-30):
    """max |mine - theirs| relative to max(|theirs|_inf, floor); AssertionError above rtol."""
    scale = max(float(np.abs(theirs).max()), floor)
    diff = float(np.abs(mine - theirs).max()) / scale
    if diff > rtol:
        raise AssertionError(f"hand-written {what} differs from cygrad's by {diff:.2e} (relative)")
    return diff


def main():
    p = argparse.ArgumentParser(description="CNN + plain SGD with hand-written derivatives")
    p.add_argument("--data", help="folder with the MNIST IDX files")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int)
    p.add_argument("--quick", action="store_true", help="1,500 images, 1 epoch, assert > 70 %%")
    args = p.parse_args()
    if args.threads:
        cg.set_num_threads(args.threads)
    x_train, y_train, x_test, y_test = mnist_or_exit(args.data, args.quick)
    if args.quick:
        x_train, y_train = subset(x_train, y_train, 1500)
        x_test, y_test = subset(x_test, y_test, 500)
    to_float = cg.data.Normalize(shape=(1, 28, 28))
    batch_size = 16 if args.quick else args.batch_size     # --quick: more steps on fewer images
    train = cg.data.DataLoader(x_train, y_train, batch_size, seed=0, transform=to_float)
    test = cg.data.DataLoader(x_test, y_test, 1000, shuffle=False, transform=to_float)
    model = cg.models.cnn(seed=0)
    rtol = 1e-5                                        # float32 kernels against NumPy

    t0 = time.perf_counter()
    for epoch in range(1 if args.quick else args.epochs):
        model.train()
        losses, worst = [], 0.0
        for i, (xb, yb) in enumerate(train):
            loss, diff = train_step(model, xb, yb, args.lr, rtol)
            losses.append(loss)
            worst = max(worst, diff)
            if i % 200 == 0:
                print(f"  step {i:5d}  loss {loss:.4f}")
        acc = cg.train.evaluate(model, test)["accuracy"]
        print(f"epoch {epoch + 1}: mean loss {np.mean(losses):.4f}, test accuracy {acc:.4f}, "
              f"hand-written vs kernel gradients agree to {worst:.1e} over {len(losses)} steps, "
              f"{time.perf_counter() - t0:.0f} s")
    if args.quick:
        check(acc > 0.7, f"test accuracy {acc:.4f} > 0.70 and every step's derivatives "
                         f"matched cygrad's (worst {worst:.1e} <= {rtol:.0e})")


if __name__ == "__main__":
    main()

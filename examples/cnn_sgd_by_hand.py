"""The CNN trained with plain SGD, its calculus written out: the forward pass and the
chain rule run layer by layer on cygrad's kernels (cg.kernels.conv2d_forward, ...,
conv2d_backward, max_pool2d_backward, relu_backward), and two derivatives by hand in NumPy:

    d cross_entropy / d logits = (softmax(logits) - one_hot(y)) / N
    d relu(x) / d x            = (x > 0)

Every step compares them with what cygrad's kernels compute (the gradient the fused
cross_entropy kernel returns, relu_backward), then uses the hand-written ones; the
update is w <- w - lr * grad over the model's flat parameter buffer. Every 200 steps
the whole hand-made gradient is also checked against autograd's (loss.backward()).

    python examples/cnn_sgd_by_hand.py [--data DIR] [--epochs 1] [--threads 2] [--quick]
"""
import argparse
import time

import numpy as np

import cygrad as cg
from _common import check, mnist_or_exit, subset

K = cg.kernels
nn = cg.nn


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward(model, x):
    """The model's layers on the kernels; returns (logits, tape of (layer, input, saved))."""
    tape = []
    for layer in model:
        saved = None
        if isinstance(layer, nn.Conv2d):
            y = K.conv2d_forward(x, layer.weight.data, layer.bias.data)
        elif isinstance(layer, nn.ReLU):
            y = K.relu(x)
        elif isinstance(layer, nn.MaxPool2d):
            y, saved = K.max_pool2d_forward(x, layer.kernel_size, stride=layer.stride)
        elif isinstance(layer, nn.Flatten):
            y = x.reshape(len(x), -1)
        elif isinstance(layer, nn.Linear):
            y = K.matmul(x, layer.weight.data, trans_b=True) + layer.bias.data
        else:
            raise TypeError(f"no hand-written rule for {layer!r}")
        tape.append((layer, x, saved))
        x = y
    return x, tape


def backward(tape, grad, rtol):
    """The chain rule through the tape, filling every parameter's .grad; returns the
    largest relative difference between the hand-written ReLU derivative and the kernel's."""
    worst = 0.0
    for i, (layer, x_in, saved) in reversed(list(enumerate(tape))):
        if isinstance(layer, nn.Conv2d):
            gx, gw, gb = K.conv2d_backward(grad, x_in, layer.weight.data, input_grad=i > 0)
            layer.weight.grad[...], layer.bias.grad[...] = gw, gb
            grad = gx
        elif isinstance(layer, nn.ReLU):
            mine = grad * (x_in > 0)                    # d loss / d x through the ReLU
            worst = max(worst, _compare(mine, K.relu_backward(grad, x_in), rtol, "ReLU derivative"))
            grad = mine
        elif isinstance(layer, nn.MaxPool2d):
            grad = K.max_pool2d_backward(grad, saved, x_in.shape)
        elif isinstance(layer, nn.Flatten):
            grad = grad.reshape(x_in.shape)
        elif isinstance(layer, nn.Linear):
            layer.weight.grad[...] = K.matmul(grad, x_in, trans_a=True)    # g.T @ x
            layer.bias.grad[...] = grad.sum(axis=0)
            grad = K.matmul(grad, layer.weight.data)                       # g @ W
    return worst


def train_step(model, x, y, lr, rtol, check_autograd):
    """Forward, hand-written backward checked against cygrad's kernels (and, when asked,
    against autograd), SGD update; returns (loss, largest relative difference)."""
    logits, tape = forward(model, x)
    loss, kernel_grad = K.cross_entropy(logits, y)
    n = logits.shape[0]
    one_hot = np.eye(logits.shape[1], dtype=logits.dtype)[y]
    grad = (softmax(logits) - one_hot) / n              # d loss / d logits
    # entries are (p - y) / n with p in [0, 1]: compare on the scale 1/n (float32 rounding
    # of p is absolute, so a confident batch's tiny gradients must not be judged relatively)
    worst = _compare(grad, kernel_grad, rtol, "cross-entropy gradient", floor=1.0 / n)
    worst = max(worst, backward(tape, grad, rtol))
    data, grads = model.flat_buffers()
    if check_autograd:
        mine = grads.copy()
        model.zero_grad()
        cg.nn.functional.cross_entropy(model(x), y).backward()
        _compare(mine, grads, 1e-4, "gradient (vs autograd)")  # bias sums round differently
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
            loss, diff = train_step(model, xb, yb, args.lr, rtol, check_autograd=i % 200 == 0)
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

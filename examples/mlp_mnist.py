"""MLP 784-128-64-10 with ReLU, cross-entropy and Adam (batch 64, 10 epochs) on MNIST,
printing the test accuracy after every epoch. The training loop is PyTorch's, word for
word: forward, loss, zero_grad, loss.backward(), step.

    python examples/mlp_mnist.py [--data DIR] [--epochs 10] [--threads 2] [--quick]
"""
import argparse
import time

import cygrad as cg
from _common import check, mnist_or_exit, subset


def main():
    p = argparse.ArgumentParser(description="MLP 784-128-64-10 on MNIST with Adam")
    p.add_argument("--data", help="folder with the MNIST IDX files")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int)
    p.add_argument("--quick", action="store_true", help="3,000 images, 2 epochs, assert > 85 %%")
    args = p.parse_args()
    if args.threads:
        cg.set_num_threads(args.threads)
    x_train, y_train, x_test, y_test = mnist_or_exit(args.data, args.quick)
    epochs = 2 if args.quick else args.epochs
    if args.quick:
        x_train, y_train = subset(x_train, y_train, 3000)
        x_test, y_test = subset(x_test, y_test, 1000)

    to_float = cg.data.Normalize(shape=(784,))     # (x / 255 - 0.1307) / 0.3081, flattened
    train = cg.data.DataLoader(x_train, y_train, args.batch_size, seed=0, transform=to_float)
    test = cg.data.DataLoader(x_test, y_test, 1000, shuffle=False, transform=to_float)
    model = cg.models.mlp((784, 128, 64, 10), seed=0)
    print(model)
    opt = cg.optim.Adam(model.parameters(), lr=args.lr)

    loss_fn = cg.nn.CrossEntropyLoss()

    t0 = time.perf_counter()
    print("epoch  train_loss  test_accuracy")
    for epoch in range(epochs):
        train.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for x, y in train:
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            count += len(y)
        model.eval()
        correct = 0
        with cg.no_grad():
            for x, y in test:
                correct += int((model(x).argmax(1) == y).sum())
        accuracy = correct / len(x_test)
        print(f"{epoch + 1:5d}  {total / count:10.4f}  {accuracy:13.4f}", flush=True)
    print(f"{len(x_train)} training images, {epochs} epochs, {time.perf_counter() - t0:.1f} s")
    if args.quick:
        check(accuracy > 0.85, f"test accuracy {accuracy:.4f} > 0.85 after {epochs} epochs")


if __name__ == "__main__":
    main()

"""MLP 784-128-64-10 with ReLU, cross-entropy and Adam (batch 64, 10 epochs) on MNIST,
printing the test accuracy after every epoch.

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

    t0 = time.perf_counter()
    history = cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, train, epochs=epochs,
                           val_loader=test, progress="epoch")
    print("epoch  train_loss  test_accuracy")
    for e, loss, acc in zip(history["epoch"], history["loss"], history["val_accuracy"]):
        print(f"{e:5d}  {loss:10.4f}  {acc:13.4f}")
    print(f"{len(x_train)} training images, {epochs} epochs, {time.perf_counter() - t0:.1f} s")
    if args.quick:
        check(history["val_accuracy"][-1] > 0.85,
              f"test accuracy {history['val_accuracy'][-1]:.4f} > 0.85 after {epochs} epochs")


if __name__ == "__main__":
    main()

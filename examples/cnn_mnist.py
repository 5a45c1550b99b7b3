"""The Keras-style CNN on MNIST: Conv32-3x3, MaxPool2, Conv64-3x3, MaxPool2, Flatten,
Dense128, Dense10 (ReLU after each hidden layer), Adam, batch 32, 5 epochs, ~99 % test
accuracy. Prints model.summary() first.

    python examples/cnn_mnist.py [--data DIR] [--epochs 5] [--threads 2] [--quick]
"""
import argparse
import time

import cygrad as cg
from _common import check, mnist_or_exit, subset


def main():
    p = argparse.ArgumentParser(description="Keras-style CNN on MNIST with Adam")
    p.add_argument("--data", help="folder with the MNIST IDX files")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int)
    p.add_argument("--checkpoint", help="save model + optimizer here after every epoch")
    p.add_argument("--quick", action="store_true", help="2,000 images, 1 epoch, assert > 85 %%")
    args = p.parse_args()
    if args.threads:
        cg.set_num_threads(args.threads)
    x_train, y_train, x_test, y_test = mnist_or_exit(args.data, args.quick)
    epochs = 1 if args.quick else args.epochs
    if args.quick:
        x_train, y_train = subset(x_train, y_train, 2000)
        x_test, y_test = subset(x_test, y_test, 500)

    model = cg.models.cnn(seed=0)
    model.summary((1, 28, 28))
    to_float = cg.data.Normalize(shape=(1, 28, 28))
    train = cg.data.DataLoader(x_train, y_train, args.batch_size, seed=0, transform=to_float)
    test = cg.data.DataLoader(x_test, y_test, 1000, shuffle=False, transform=to_float)
    opt = cg.optim.Adam(model.parameters(), lr=args.lr)

    t0 = time.perf_counter()
    history = cg.train.fit(model, cg.nn.CrossEntropyLoss(), opt, train, epochs=epochs,
                           val_loader=test, checkpoint=args.checkpoint,
                           progress="epoch" if args.quick else True)
    print("epoch  train_loss  test_accuracy  images/s")
    for e, loss, acc, speed in zip(history["epoch"], history["loss"], history["val_accuracy"],
                                   history["images_per_s"]):
        print(f"{e:5d}  {loss:10.4f}  {acc:13.4f}  {speed:8.0f}")
    print(f"{len(x_train)} training images, {epochs} epochs, {time.perf_counter() - t0:.1f} s")
    if args.quick:
        check(history["val_accuracy"][-1] > 0.85,
              f"test accuracy {history['val_accuracy'][-1]:.4f} > 0.85 after 1 epoch")


if __name__ == "__main__":
    main()

"""PyTorch running the same MNIST recipe as `python -m cygrad train mlp|cnn`, for comparison.

Same data pipeline (cygrad's loader: same normalisation, same shuffled order per epoch),
same architecture, Adam 1e-3, batch 64 (mlp, 10 epochs) or 32 (cnn, 5 epochs); torch's own
initialisation from torch.manual_seed(seed). Prints test accuracy per epoch, wall time and
images/s, as the cygrad CLI does.

    python bench/torch_recipe.py mlp --threads 2 --data ../shared/datasets/mnist
"""
import argparse
import time

import torch

import cygrad as cg
from cygrad.cli import RECIPES


def build(name):
    T = torch.nn
    if name == "mlp":
        return T.Sequential(T.Linear(784, 128), T.ReLU(), T.Linear(128, 64), T.ReLU(), T.Linear(64, 10))
    return T.Sequential(T.Conv2d(1, 32, 3), T.ReLU(), T.MaxPool2d(2), T.Conv2d(32, 64, 3), T.ReLU(),
                        T.MaxPool2d(2), T.Flatten(), T.Linear(1600, 128), T.ReLU(), T.Linear(128, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=("mlp", "cnn"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data")
    args = p.parse_args()
    recipe = RECIPES[args.model]
    epochs = args.epochs or recipe["epochs"]
    batch = args.batch_size or recipe["batch_size"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, test = cg.data.mnist_loaders(args.data, batch_size=batch, flatten=args.model == "mlp",
                                        seed=args.seed)
    model = build(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    t_all = time.perf_counter()
    print(f"torch {torch.__version__} {args.model}: Adam 1e-3, batch {batch}, {epochs} epochs, "
          f"{args.threads} threads")
    print("epoch  train_loss  test_acc  seconds  images/s")
    for epoch in range(epochs):
        train.set_epoch(epoch)
        model.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for xb, yb in train:
            x, y = torch.from_numpy(xb), torch.from_numpy(yb)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(yb)
            loss_sum += loss.item() * len(yb)
        seconds = time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in test:
                correct += int((model(torch.from_numpy(xb)).argmax(1).numpy() == yb).sum())
        print(f"{epoch + 1:5d}  {loss_sum / seen:10.4f}  {correct / 10000:8.4f}  {seconds:7.1f}"
              f"  {seen / seconds:8,.0f}")
    print(f"wall {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()

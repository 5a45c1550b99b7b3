"""The models of the source texts, built from cygrad.nn (keys and shapes as the equivalent
torch.nn.Sequential, so weights move both ways)."""
import numpy as np

from cygrad import nn
from cygrad.nn.init import generator


def mlp(sizes=(784, 128, 64, 10), *, dtype=np.float32, seed=None):
    """Linear/ReLU stack 784-128-64-10 (no activation after the last layer: logits).

    seed: int or numpy Generator for the initial weights (None: cygrad's global generator).
    """
    rng = generator(seed)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU(dtype=dtype))
        layers.append(nn.Linear(fan_in, fan_out, dtype=dtype, rng=rng))
    return nn.Sequential(*layers)


def cnn(*, dtype=np.float32, seed=None, batch_norm=False):
    """Conv(1,32,3) ReLU MaxPool2 Conv(32,64,3) ReLU MaxPool2 Flatten Linear(1600,128) ReLU
    Linear(128,10), on (N, 1, 28, 28) inputs.

    batch_norm=True: a BatchNorm2d after each convolution and a BatchNorm1d after the
    hidden Linear (each before its ReLU; those three layers then have no bias, which the
    normalisation would cancel).
    """
    rng = generator(seed)
    bias = not batch_norm

    def norm(cls, channels):
        return [cls(channels, dtype=dtype)] if batch_norm else []

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, bias=bias, dtype=dtype, rng=rng), *norm(nn.BatchNorm2d, 32),
        nn.ReLU(dtype=dtype), nn.MaxPool2d(2, dtype=dtype),
        nn.Conv2d(32, 64, 3, bias=bias, dtype=dtype, rng=rng), *norm(nn.BatchNorm2d, 64),
        nn.ReLU(dtype=dtype), nn.MaxPool2d(2, dtype=dtype),
        nn.Flatten(dtype=dtype),
        nn.Linear(1600, 128, bias=bias, dtype=dtype, rng=rng), *norm(nn.BatchNorm1d, 128),
        nn.ReLU(dtype=dtype),
        nn.Linear(128, 10, dtype=dtype, rng=rng))


def linear_regression(in_features=1, out_features=1, *, dtype=np.float32, seed=None):
    """h(x) = theta0 + theta1 * x (bias and weight of one Linear layer); train with MSELoss."""
    return nn.Sequential(nn.Linear(in_features, out_features, dtype=dtype, rng=generator(seed)))


BUILDERS = {"mlp": mlp, "cnn": cnn, "linear_regression": linear_regression}

__all__ = ["mlp", "cnn", "linear_regression", "BUILDERS"]

"""Batch normalisation layers (torch.nn.BatchNorm1d / BatchNorm2d)."""
import numpy as np

from cygrad.nn import functional as F
from cygrad.nn._layer import Layer
from cygrad.nn.parameter import Parameter


class _BatchNorm(Layer):
    """Normalise each channel (axis 1) by batch statistics in train mode and by running
    estimates in eval mode, then scale and shift (weight, bias) when affine.

    Arguments, defaults, buffers (running_mean, running_var, num_batches_tracked) and
    state_dict keys are torch's; momentum=None averages all batches so far (the factor
    is 1 / num_batches_tracked). track_running_stats=False always uses batch statistics.
    """

    _dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float32):
        super().__init__(np.float32 if dtype is None else dtype)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        c = self.num_features
        if self.affine:
            self.weight = Parameter(np.ones(c, self.dtype))
            self.bias = Parameter(np.zeros(c, self.dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, self.dtype))
            self.register_buffer("running_var", np.ones(c, self.dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def forward(self, x):
        x = F._in(x)
        if x.data.ndim not in self._dims:
            raise ValueError(f"expected a {' or '.join(f'{d}-D' for d in self._dims)} input, "
                             f"got shape {x.data.shape}")
        if x.data.shape[1] != self.num_features:
            raise ValueError(f"input has {x.data.shape[1]} channels (axis 1), expected "
                             f"{self.num_features}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:  # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            use_batch, factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs (torch.nn.BatchNorm1d)."""

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs (torch.nn.BatchNorm2d)."""

    _dims = (4,)

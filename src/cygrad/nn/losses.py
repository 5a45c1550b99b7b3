"""Losses: calling one returns the loss as a Python float and caches its gradient,
which `.backward()` returns (d loss / d prediction), as torch.nn's losses with
reduction 'mean' (default) or 'sum'."""
import numpy as np

from cygrad import backend


class _Loss:
    _kernel = None

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self._grad = None

    def _target(self, pred, target):
        return np.ascontiguousarray(target, dtype=pred.dtype)

    def forward(self, pred, target):
        if not isinstance(pred, np.ndarray):
            raise TypeError(f"{type(self).__name__}: prediction must be a numpy.ndarray")
        pred = np.ascontiguousarray(pred)
        fn = getattr(backend.current(), self._kernel)
        loss, self._grad = fn(pred, self._target(pred, target), **self._options())
        return float(loss)

    __call__ = forward

    def _options(self):
        return {"reduction": self.reduction}

    def backward(self):
        """Gradient of the last loss with respect to the prediction."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss was computed")
        return self._grad

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(_Loss):
    """mean (or sum) of (pred - target)^2."""
    _kernel = "mse_loss"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits (N, C) against class indices (N,) or probabilities (N, C).

    label_smoothing as torch: the target becomes (1 - s) * one_hot + s / C.
    """
    _kernel = "cross_entropy"

    def __init__(self, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _options(self):
        return {"reduction": self.reduction, "label_smoothing": self.label_smoothing}

    def _target(self, pred, target):
        target = np.asarray(target)
        if target.dtype.kind in "iub":  # class indices: the kernels take int32 or int64
            if target.dtype not in (np.int32, np.int64):
                target = target.astype(np.int64)
            return np.ascontiguousarray(target)
        return np.ascontiguousarray(target, dtype=pred.dtype)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits in the stable form max(x,0) - x t + log(1 + exp(-|x|))."""
    _kernel = "binary_cross_entropy_with_logits"


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities, log clamped at -100 as torch."""
    _kernel = "binary_cross_entropy"

"""Loss modules (torch.nn's names, arguments and defaults): calling one returns the loss
as a 0-d Tensor; `loss.backward()` runs the fused gradient the kernel computed with it."""
from cygrad.nn import functional as F
from cygrad.nn.module import Module


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = F._reduction(type(self).__name__, size_average, reduce, reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"

    def backward(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__}.backward is gone: the loss is a Tensor, call "
                        "loss.backward() on it")


class MSELoss(_Loss):
    """mean (or sum) of (input - target)^2."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """mean (or sum) of |input - target|."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits (N, C) against class indices (N,) or probabilities
    (N, C), as torch.nn.CrossEntropyLoss; label_smoothing as torch: the target becomes
    (1 - s) * one_hot + s / C. Not supported (NotImplementedError): weight, a
    non-negative ignore_index present in the targets, reduction='none'."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0):
        super().__init__(size_average, reduce, reduction)
        if weight is not None:
            F._unsupported("CrossEntropyLoss", "weight= (class weights)")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target):
        return F.cross_entropy(input, target, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (N, C) at class indices (N,)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        if weight is not None:
            F._unsupported("NLLLoss", "weight= (class weights)")
        self.ignore_index = int(ignore_index)

    def forward(self, input, target):
        return F.nll_loss(input, target, ignore_index=self.ignore_index, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits in the stable form max(x,0) - x t + log(1 + exp(-|x|))."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        if weight is not None or pos_weight is not None:
            F._unsupported("BCEWithLogitsLoss", "weight= / pos_weight=")

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, reduction=self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities, log clamped at -100 as torch."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        if weight is not None:
            F._unsupported("BCELoss", "weight=")

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, reduction=self.reduction)

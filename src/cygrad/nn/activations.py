"""Parameter-free layers: activations, pooling, Flatten, Dropout (torch.nn's names and
defaults; each forward is one cygrad.nn.functional call)."""
from cygrad.nn import functional as F
from cygrad.nn import init
from cygrad.nn._layer import Layer, pair


class ReLU(Layer):
    """max(x, 0); derivative 1 where x > 0 (0 at x == 0, as torch). `inplace` is accepted
    for torch compatibility; the result is always a new tensor."""

    def __init__(self, inplace=False, *, dtype=None):
        super().__init__(dtype)
        self.inplace = bool(inplace)

    def forward(self, x):
        return F.relu(self._check_dtype(x))


class LeakyReLU(Layer):
    """x if x > 0 else negative_slope * x (torch default slope 0.01)."""

    def __init__(self, negative_slope=0.01, inplace=False, *, dtype=None):
        super().__init__(dtype)
        self.negative_slope = float(negative_slope)
        self.inplace = bool(inplace)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def forward(self, x):
        return F.leaky_relu(self._check_dtype(x), self.negative_slope)


class Sigmoid(Layer):
    """1 / (1 + exp(-x)); derivative y (1 - y) from the output."""

    def forward(self, x):
        return F.sigmoid(self._check_dtype(x))


class Tanh(Layer):
    """tanh(x); derivative 1 - y^2 from the output."""

    def forward(self, x):
        return F.tanh(self._check_dtype(x))


class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, *, dtype=None):
        super().__init__(dtype)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.ceil_mode = bool(ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (", ceil_mode=True" if self.ceil_mode else ""))


class MaxPool2d(_Pool2d):
    """Max over each window (torch.nn.MaxPool2d; stride defaults to kernel_size);
    return_indices=True returns (output, indices) as torch."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False, *, dtype=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, dtype=dtype)
        if pair(dilation, "dilation") != (1, 1):
            F._unsupported("MaxPool2d", f"dilation={dilation}")
        self.return_indices = bool(return_indices)

    def forward(self, x):
        return F.max_pool2d(self._check_dtype(x), self.kernel_size, self.stride, self.padding,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(_Pool2d):
    """Mean over each window (torch.nn.AvgPool2d): count_include_pad (default True: the
    padding counts in the divisor), ceil_mode and divisor_override as torch."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, *, dtype=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, dtype=dtype)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, x):
        return F.avg_pool2d(self._check_dtype(x), self.kernel_size, self.stride, self.padding,
                            self.ceil_mode, self.count_include_pad, self.divisor_override)


class Flatten(Layer):
    """Dimensions start_dim..end_dim merged (torch.nn.Flatten: start_dim=1, end_dim=-1)."""

    def __init__(self, start_dim=1, end_dim=-1, *, dtype=None):
        super().__init__(dtype)
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        x = F._in(self._check_dtype(x))
        if x.data.dtype.kind != "f":
            raise TypeError(f"input must be float32 or float64, got {x.data.dtype}")
        if x.data.ndim < 2 and self.start_dim == 1:
            raise ValueError(f"expected an input with a batch dimension, got shape {x.data.shape}")
        return x.flatten(self.start_dim, self.end_dim)


class Dropout(Layer):
    """Zero each element with probability p in train mode, scale survivors by 1/(1-p).

    The mask comes from a counter-based generator keyed by (seed, element), the seed
    advancing by one per forward call, so runs are reproducible for any thread count
    (and a resumed run continues the stream). `seed` defaults to a draw from `rng` (or
    cygrad's global generator).
    """

    def __init__(self, p=0.5, inplace=False, *, seed=None, rng=None, dtype=None):
        super().__init__(dtype)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self.inplace = bool(inplace)
        self.seed = int(init.generator(rng).integers(2**62)) if seed is None else int(seed)
        self.calls = 0

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        x = self._check_dtype(x)
        if not self.training or self.p == 0.0:
            return F._in(x)
        if self.p == 1.0:
            return F.dropout(x, 1.0)
        y = F.dropout_seeded(x, self.p, self.seed + self.calls)
        self.calls += 1
        return y

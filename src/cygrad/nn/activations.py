"""Parameter-free layers: activations, pooling, Flatten, Dropout."""
import numpy as np

from cygrad import backend
from cygrad.nn import init
from cygrad.nn._layer import Layer, pair


class ReLU(Layer):
    """max(x, 0); derivative 1 where x > 0 (0 at x == 0, as torch)."""

    def forward(self, x):
        x = self._input(x)
        self._save(x)
        return self._output(backend.current().relu(x))

    def backward(self, grad_out, input_grad=True):
        (x,) = self._saved(grad_out)
        return backend.current().relu_backward(np.ascontiguousarray(grad_out), x)


class LeakyReLU(Layer):
    """x if x > 0 else negative_slope * x (torch default slope 0.01)."""

    def __init__(self, negative_slope=0.01, *, dtype=None):
        super().__init__(dtype)
        self.negative_slope = float(negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def forward(self, x):
        x = self._input(x)
        self._save(x)
        return self._output(backend.current().leaky_relu(x, self.negative_slope))

    def backward(self, grad_out, input_grad=True):
        (x,) = self._saved(grad_out)
        return backend.current().leaky_relu_backward(
            np.ascontiguousarray(grad_out), x, self.negative_slope)


class Sigmoid(Layer):
    """1 / (1 + exp(-x)); derivative y (1 - y) from the output."""

    def forward(self, x):
        y = backend.current().sigmoid(self._input(x))
        self._save(y)
        return self._output(y)

    def backward(self, grad_out, input_grad=True):
        (y,) = self._saved(grad_out)
        return backend.current().sigmoid_backward(np.ascontiguousarray(grad_out), y)


class Tanh(Layer):
    """tanh(x); derivative 1 - y^2 from the output."""

    def forward(self, x):
        y = backend.current().tanh(self._input(x))
        self._save(y)
        return self._output(y)

    def backward(self, grad_out, input_grad=True):
        (y,) = self._saved(grad_out)
        return backend.current().tanh_backward(np.ascontiguousarray(grad_out), y)


class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0, *, dtype=None):
        super().__init__(dtype)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _checked(self, x):
        x = self._input(x, 4, "(N, C, H, W)")
        for d in (0, 1):
            if x.shape[2 + d] + 2 * self.padding[d] < self.kernel_size[d]:
                raise ValueError(f"{self!r}: input of shape {x.shape} is smaller than the "
                                 f"kernel {self.kernel_size} after padding")
        return x


class MaxPool2d(_Pool2d):
    """Max over each window (torch.nn.MaxPool2d; stride defaults to kernel_size)."""

    def forward(self, x):
        x = self._checked(x)
        y, indices = backend.current().max_pool2d_forward(
            x, self.kernel_size, stride=self.stride, padding=self.padding)
        self._save(indices, x.shape)
        return self._output(y)

    def backward(self, grad_out, input_grad=True):
        indices, shape = self._saved(grad_out)
        return backend.current().max_pool2d_backward(np.ascontiguousarray(grad_out), indices, shape)


class AvgPool2d(_Pool2d):
    """Mean over each window, padding counted (torch.nn.AvgPool2d's count_include_pad=True)."""

    def forward(self, x):
        x = self._checked(x)
        y = backend.current().avg_pool2d_forward(
            x, self.kernel_size, stride=self.stride, padding=self.padding)
        self._save(x.shape)
        return self._output(y)

    def backward(self, grad_out, input_grad=True):
        (shape,) = self._saved(grad_out)
        return backend.current().avg_pool2d_backward(
            np.ascontiguousarray(grad_out), shape, self.kernel_size,
            stride=self.stride, padding=self.padding)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), as torch.nn.Flatten() (start_dim=1)."""

    def forward(self, x):
        x = self._input(x)
        if x.ndim < 2:
            raise ValueError(f"{self!r}: expected an input with a batch dimension, got shape {x.shape}")
        self._save(x.shape)
        return self._output(x.reshape(x.shape[0], -1))

    def backward(self, grad_out, input_grad=True):
        (shape,) = self._saved(grad_out)
        return grad_out.reshape(shape)


class Dropout(Layer):
    """Zero each element with probability p in train mode, scale survivors by 1/(1-p).

    The mask comes from a counter-based generator keyed by (seed, element), the seed
    advancing by one per forward call, so runs are reproducible for any thread count.
    `seed` defaults to a draw from `rng` (or cygrad's global generator).
    """

    def __init__(self, p=0.5, *, seed=None, rng=None, dtype=None):
        super().__init__(dtype)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.seed = int(init.generator(rng).integers(2**62)) if seed is None else int(seed)
        self.calls = 0

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        x = self._input(x)
        if not self.training or self.p == 0.0:
            self._save(None)
            return self._output(x)
        y, mask = backend.current().dropout(x, self.p, self.seed + self.calls)
        self.calls += 1
        self._save(mask)
        return self._output(y)

    def backward(self, grad_out, input_grad=True):
        (mask,) = self._saved(grad_out)
        g = np.ascontiguousarray(grad_out)
        return g if mask is None else backend.current().dropout_backward(g, mask, self.p)

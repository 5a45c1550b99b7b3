"""Layers with parameters: Linear and Conv2d (PyTorch layouts and default initialisation)."""
import numpy as np

from cygrad import backend
from cygrad.nn import init
from cygrad.nn._layer import Layer, pair
from cygrad.nn.parameter import Parameter


class Linear(Layer):
    """y = x @ W.T + b, W (out_features, in_features) as torch.nn.Linear.

    Initialised as torch: W and b ~ U(-1/sqrt(in_features), 1/sqrt(in_features)),
    drawn from `rng` (Generator or int seed; default cygrad's global generator).
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None):
        super().__init__(np.float32 if dtype is None else dtype)
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = init.generator(rng)
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(init.fan_in_uniform(shape, self.in_features, rng, self.dtype))
        self.bias = Parameter(init.fan_in_uniform(
            (self.out_features,), self.in_features, rng, self.dtype)) if bias else None

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

    def forward(self, x):
        x = self._input(x, 2, f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: input has shape {x.shape}, expected (N, {self.in_features})")
        F = backend.current()
        if self.bias is None:
            y = F.matmul(x, self.weight.data, trans_b=True)
        else:  # addmm as torch: y = b + x @ W.T
            y = np.empty((x.shape[0], self.out_features), self.dtype)
            y[...] = self.bias.data
            F.matmul(x, self.weight.data, trans_b=True, beta=1.0, out=y)
        self._save(x)
        return self._output(y)

    def backward(self, grad_out, input_grad=True):
        (x,) = self._saved(grad_out)
        g = np.ascontiguousarray(grad_out)
        F = backend.current()
        F.matmul(g, x, trans_a=True, beta=1.0, out=self.weight.grad)  # dW += g.T @ x
        if self.bias is not None:  # db += column sums of g, as a GEMM with a row of ones
            ones = np.ones((1, g.shape[0]), self.dtype)
            F.matmul(ones, g, beta=1.0, out=self.bias.grad.reshape(1, -1))
        return F.matmul(g, self.weight.data) if input_grad else None  # dx = g @ W


class Conv2d(Layer):
    """2-D convolution as torch.nn.Conv2d (NCHW, weight (C_out, C_in, KH, KW), no groups).

    Initialised as torch: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in*KH*KW.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, *, dtype=np.float32, rng=None):
        super().__init__(np.float32 if dtype is None else dtype)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        rng = init.generator(rng)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.weight = Parameter(init.fan_in_uniform(shape, fan_in, rng, self.dtype))
        self.bias = Parameter(init.fan_in_uniform(
            (self.out_channels,), fan_in, rng, self.dtype)) if bias else None

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s + ("" if self.bias is not None else ", bias=False")

    def _geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)

    def forward(self, x):
        x = self._input(x, 4, f"(N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: input has shape {x.shape}, expected "
                             f"(N, {self.in_channels}, H, W)")
        for d in (0, 1):  # torch's output size; refuse a kernel larger than the padded input
            span = self.dilation[d] * (self.kernel_size[d] - 1) + 1
            if x.shape[2 + d] + 2 * self.padding[d] < span:
                raise ValueError(f"{self!r}: input of shape {x.shape} is smaller than the "
                                 f"(dilated) kernel {self.kernel_size} after padding")
        bias = None if self.bias is None else self.bias.data
        y = backend.current().conv2d_forward(x, self.weight.data, bias, **self._geometry())
        self._save(x)
        return self._output(y)

    def backward(self, grad_out, input_grad=True):
        (x,) = self._saved(grad_out)
        gx, gw, gb = backend.current().conv2d_backward(
            np.ascontiguousarray(grad_out), x, self.weight.data, input_grad=input_grad,
            **self._geometry())
        self.weight.grad += gw
        if self.bias is not None:
            self.bias.grad += gb
        return gx

"""Layers with parameters: Linear and Conv2d (PyTorch layouts and default initialisation)."""
import numpy as np

from cygrad.nn import functional as F
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
        return F.linear(x, self.weight, self.bias)


class Conv2d(Layer):
    """2-D convolution as torch.nn.Conv2d (NCHW, weight (C_out, C_in / groups, KH, KW)).

    padding: an int, a pair, 'valid' or 'same' (stride 1, odd dilated kernel).
    Initialised as torch: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in*KH*KW.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, dtype=np.float32, rng=None):
        super().__init__(np.float32 if dtype is None else dtype)
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode={padding_mode!r} is not supported "
                                      "by cygrad (only 'zeros')")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.groups = int(groups)
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: groups={groups} must be >= 1 and divide in_channels "
                             f"({in_channels}) and out_channels ({out_channels})")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        rng = init.generator(rng)
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(init.fan_in_uniform(shape, fan_in, rng, self.dtype))
        self.bias = Parameter(init.fan_in_uniform(
            (self.out_channels,), fan_in, rng, self.dtype)) if bias else None

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else \
                f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

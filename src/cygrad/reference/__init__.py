"""Readable NumPy implementations: the specification every compiled kernel is checked against."""
from cygrad.reference.gemm import matmul
from cygrad.reference.conv import col2im, conv2d_backward, conv2d_forward, im2col
from cygrad.reference.pool import (avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward,
                                   max_pool2d_forward)

__all__ = ["matmul",
           "im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"]

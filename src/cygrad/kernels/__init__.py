"""Compiled kernels (Cython + C, OpenMP). Same names and signatures as cygrad.reference."""
from cygrad.kernels.gemm import matmul
from cygrad.kernels.activations import (
    leaky_relu, leaky_relu_backward, log_softmax, log_softmax_backward, relu, relu_backward,
    sigmoid, sigmoid_backward, softmax, softmax_backward, tanh, tanh_backward)
from cygrad.kernels.losses import (
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, l1_loss, l1_penalty,
    l2_penalty, mse_loss, nll_loss)
from cygrad.kernels.dropout import dropout, dropout_backward
from cygrad.kernels.optim import adagrad_step, adam_step, adamw_step, rmsprop_step, sgd_step
from cygrad.kernels.conv import col2im, conv2d_backward, conv2d_forward, im2col
from cygrad.kernels.pool import (avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward,
                                 max_pool2d_forward)
from cygrad.kernels.norm import batch_norm_backward, batch_norm_forward
from cygrad.kernels.clip import clamp_, scale_, vector_norm

__all__ = ["matmul",
           "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax",
           "relu_backward", "leaky_relu_backward", "sigmoid_backward", "tanh_backward",
           "softmax_backward", "log_softmax_backward",
           "mse_loss", "l1_loss", "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits",
           "binary_cross_entropy",
           "l1_penalty", "l2_penalty", "dropout", "dropout_backward",
           "sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "adamw_step",
           "im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "batch_norm_forward", "batch_norm_backward", "vector_norm", "scale_", "clamp_"]

"""Readable NumPy implementations: the specification every compiled kernel is checked against."""
from cygrad.reference.gemm import matmul
from cygrad.reference.activations import (
    leaky_relu, leaky_relu_backward, log_softmax, log_softmax_backward, relu, relu_backward,
    sigmoid, sigmoid_backward, softmax, softmax_backward, tanh, tanh_backward)
from cygrad.reference.losses import (
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, l1_loss, l1_penalty,
    l2_penalty, mse_loss, nll_loss)
from cygrad.reference.dropout import dropout, dropout_backward
from cygrad.reference.optim import adagrad_step, adam_step, adamw_step, rmsprop_step, sgd_step
from cygrad.reference.conv import col2im, conv2d_backward, conv2d_forward, im2col
from cygrad.reference.pool import (avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward,
                                   max_pool2d_forward)
from cygrad.reference.norm import batch_norm_backward, batch_norm_forward
from cygrad.reference.clip import clamp_, scale_, vector_norm

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

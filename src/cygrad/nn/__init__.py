"""cygrad.nn: modules with an explicit backward pass, and losses (torch.nn's names and defaults)."""
from cygrad.nn.activations import (AvgPool2d, Dropout, Flatten, LeakyReLU, MaxPool2d, ReLU,
                                   Sigmoid, Tanh)
from cygrad.nn.init import manual_seed
from cygrad.nn.layers import Conv2d, Linear
from cygrad.nn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from cygrad.nn.module import Module, Sequential
from cygrad.nn.parameter import Parameter, flatten

__all__ = ["Module", "Sequential", "Parameter", "Linear", "Conv2d", "ReLU", "LeakyReLU",
           "Sigmoid", "Tanh", "MaxPool2d", "AvgPool2d", "Flatten", "Dropout", "MSELoss",
           "CrossEntropyLoss", "BCEWithLogitsLoss", "BCELoss", "manual_seed", "flatten"]

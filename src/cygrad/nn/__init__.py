"""cygrad.nn: modules (forward only; autograd records the backward), losses, functional."""
from cygrad.nn import functional, init, utils
from cygrad.nn.activations import (AvgPool2d, Dropout, Flatten, LeakyReLU, MaxPool2d, ReLU,
                                   Sigmoid, Tanh)
from cygrad.nn.container import ModuleDict, ModuleList, Sequential
from cygrad.nn.init import manual_seed
from cygrad.nn.layers import Conv2d, Linear
from cygrad.nn.losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss,
                              NLLLoss)
from cygrad.nn.module import Module
from cygrad.nn.modules_extra import Identity, LogSoftmax, Softmax, Unflatten
from cygrad.nn.normalization import BatchNorm1d, BatchNorm2d
from cygrad.nn.parameter import Parameter, flatten

__all__ = ["Module", "Sequential", "ModuleList", "ModuleDict", "Parameter", "Linear", "Conv2d",
           "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
           "MaxPool2d", "AvgPool2d", "Flatten", "Unflatten", "Dropout", "BatchNorm1d",
           "BatchNorm2d", "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss",
           "BCELoss", "manual_seed", "flatten", "functional", "init", "utils"]

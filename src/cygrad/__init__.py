"""cygrad: a CPU deep-learning library with compiled, verified kernels."""
__version__ = "0.1.0"

from cygrad import _malloc

_malloc.tune()  # before the first large allocation (see cygrad/_malloc.py)

from cygrad import kernels, reference, testing  # noqa: E402
from cygrad._config import config, get_num_threads, set_num_threads, show_config, threads
from cygrad.backend import get_backend, set_backend, use_backend
from cygrad import autograd
from cygrad.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from cygrad.tensor import Tensor, tensor
from cygrad import nn, optim, data, train, models
from cygrad.io import CheckpointError, load, save
from cygrad.nn.init import manual_seed

__all__ = ["kernels", "reference", "config", "show_config", "get_num_threads",
           "set_num_threads", "threads", "__version__", "nn", "optim", "data", "train",
           "models", "save", "load", "CheckpointError", "set_backend", "get_backend",
           "use_backend", "manual_seed", "autograd", "Tensor", "tensor", "no_grad",
           "enable_grad", "set_grad_enabled", "is_grad_enabled"]

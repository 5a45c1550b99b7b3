"""Random initialisation as PyTorch's defaults, from seeded NumPy generators.

Layers draw from the generator they are given (`rng=`: a numpy Generator or an int
seed) or else from cygrad's global generator, which `manual_seed(seed)` resets
(seeded with 0 at import), so building a model is deterministic.
"""
import math

import numpy as np

_global = np.random.default_rng(0)


def manual_seed(seed):
    """Reset the global generator the layers draw their initial weights from."""
    global _global
    _global = np.random.default_rng(seed)
    return _global


def generator(rng=None):
    """rng as a numpy Generator: None -> the global one, an int -> a new seeded one."""
    if rng is None:
        return _global
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def float_dtype(dtype):
    """dtype as a NumPy dtype, which must be float32 or float64 (TypeError otherwise)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def fan_in_uniform(shape, fan_in, rng, dtype):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for weights and biases.

    Weights: kaiming_uniform_(a=sqrt(5)) has gain sqrt(2/(1+a^2)) = sqrt(1/3) and bound
    gain*sqrt(3/fan_in) = 1/sqrt(fan_in). Biases: bound 1/sqrt(fan_in) directly.
    """
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return generator(rng).uniform(-bound, bound, size=shape).astype(dtype)

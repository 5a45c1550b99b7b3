"""Readable NumPy implementations: the specification every compiled kernel is checked against."""
from cygrad.reference.gemm import matmul

__all__ = ["matmul"]

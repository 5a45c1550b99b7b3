"""Compiled kernels (Cython + C, OpenMP). Same names and signatures as cygrad.reference."""
from cygrad.kernels.gemm import matmul

__all__ = ["matmul"]

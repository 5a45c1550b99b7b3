# Argument handling and work splitting shared by the elementwise kernels
# (activations, losses, dropout, optim). Inline: compiled into each module.
cimport numpy as cnp
from cygrad.kernels._checks cimport float_array, same_dtype, check_writeable, overlaps

# Below PAR_MIN_* elements a kernel runs on the calling thread. Measured on the
# 2-core dev box (float32, 1 vs 2 threads, 4K..256K elements): with OpenMP's
# threads spinning on an idle machine, 2 threads win from ~8K elements for
# exp/tanh-based ops, ~16K for updates, sums and dropout, ~64K-128K for
# relu-like ops. But waking a sleeping team (OMP_WAIT_POLICY=passive, or a
# machine busy with other work) costs 10-20 us, so each threshold sits where
# the serial call takes ~5-20 us: a 64x128 batch always runs serially.
cdef enum:
    PAR_MIN_CHEAP = 131072          # relu, leaky_relu and the backward maps
    PAR_MIN_MEDIUM = 32768          # optimizer updates, mse/l1/l2, dropout
    PAR_MIN_TRANSCENDENTAL = 16384  # sigmoid, tanh, softmax, BCE, cross_entropy
    # fixed reduction block: a loss is the in-order sum of per-block partial sums
    SUM_BLOCK = 8192

cdef inline int like(object x, int t, object ref, str name, str ref_name) except -1:
    """x is a float array of ref's dtype (type number t) and shape."""
    same_dtype(float_array(x, name), t, x, name, ref_name)
    if not cnp.PyArray_SAMESHAPE(<cnp.ndarray>x, <cnp.ndarray>ref):
        raise ValueError(f"{name} has shape {x.shape} but {ref_name} has shape {ref.shape}: "
                         "they must match")
    return 0

cdef inline cnp.ndarray new_like(object x, int t):
    return <cnp.ndarray>cnp.PyArray_EMPTY(cnp.PyArray_NDIM(<cnp.ndarray>x),
                                          cnp.PyArray_DIMS(<cnp.ndarray>x), t, 0)

cdef inline bint same_memory(object a, object b):
    return (cnp.PyArray_DATA(<cnp.ndarray>a) == cnp.PyArray_DATA(<cnp.ndarray>b)
            and cnp.PyArray_NBYTES(<cnp.ndarray>a) == cnp.PyArray_NBYTES(<cnp.ndarray>b))

cdef inline int no_partial_overlap(object out, object x, str name) except -1:
    if x is not None and overlaps(out, x) and not same_memory(out, x):
        raise ValueError(f"out overlaps {name} (only out={name} exactly, in place, is allowed)")
    return 0

cdef inline cnp.ndarray out_array(object out, object x, int t, str name,
                                  object other=None, str other_name=None):
    """A new array like x, or `out` checked: same dtype/shape, writeable, and either
    x itself (in place) or disjoint from x and other."""
    if out is None:
        return new_like(x, t)
    like(out, t, x, "out", name)
    check_writeable(out, "out")
    no_partial_overlap(out, x, name)
    no_partial_overlap(out, other, other_name)
    return <cnp.ndarray>out

cdef inline Py_ssize_t chunk_len(Py_ssize_t n, int nt) noexcept nogil:
    """Length of each thread's slice of n elements: a multiple of 64 (whole cache lines)."""
    cdef Py_ssize_t c = (n + nt - 1) // nt
    return (c + 63) & ~(<Py_ssize_t>63)

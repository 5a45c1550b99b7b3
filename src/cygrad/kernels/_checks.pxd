# Argument checks shared by the compiled kernels (inline: compiled into each
# module). They run with the GIL, before any nogil loop: inside those loops
# nothing is bounds-checked, so these are what keep bad input out.
cimport numpy as cnp

cdef inline int float_array(object x, str name) except -1:
    """Type number of x (NPY_FLOAT or NPY_DOUBLE), for a C-contiguous float32/float64 ndarray."""
    if not cnp.PyArray_Check(x):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>x
    cdef int t = cnp.PyArray_TYPE(arr)
    if (t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE) or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(f"{name} must be float32 or float64 (native byte order), got {arr.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    return t

cdef inline int same_dtype(int t, int t_ref, object x, str name, str ref_name) except -1:
    if t != t_ref:
        raise TypeError(f"{name} has dtype {x.dtype} but {ref_name} has dtype "
                        f"{'float32' if t_ref == cnp.NPY_FLOAT else 'float64'}: they must match")
    return 0

cdef inline int check_ndim(object x, int ndim, str name) except -1:
    cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>x)
    if nd != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {nd}-D array of shape {x.shape}")
    return 0

cdef inline int check_writeable(object x, str name) except -1:
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>x):
        raise ValueError(f"{name} is read-only")
    return 0

cdef inline bint overlaps(object x, object y):
    """True if the memory ranges of two contiguous arrays intersect."""
    cdef cnp.ndarray ax = <cnp.ndarray>x, ay = <cnp.ndarray>y
    cdef Py_ssize_t nx = cnp.PyArray_NBYTES(ax), ny = cnp.PyArray_NBYTES(ay)
    if nx == 0 or ny == 0:
        return False
    cdef char *px = <char *>cnp.PyArray_DATA(ax)
    cdef char *py = <char *>cnp.PyArray_DATA(ay)
    return px < py + ny and py < px + nx

cdef inline void *array_data(object x):
    """Data pointer of an ndarray already checked by the helpers above."""
    return cnp.PyArray_DATA(<cnp.ndarray>x)

# Row reductions shared by softmax, log_softmax (through cg_softmax_rows_*) and
# cross_entropy: the inline C helpers of csrc/cg_elementwise.h, for fused types.
from cython cimport floating

cdef extern from "cg_elementwise.h" nogil:
    float cg_row_max_f32(const float *x, long c)
    double cg_row_max_f64(const double *x, long c)
    double cg_exp_sum_f32(const float *x, float m, float *e, long c)
    double cg_exp_sum_f64(const double *x, double m, double *e, long c)
    void cg_softmax_rows_f32(const float *x, float *y, long r0, long r1, long c, int take_log)
    void cg_softmax_rows_f64(const double *x, double *y, long r0, long r1, long c, int take_log)


cdef inline floating row_max(const floating *x, Py_ssize_t c) noexcept nogil:
    """max over a row of c >= 1 values."""
    if floating is float:
        return cg_row_max_f32(x, c)
    else:
        return cg_row_max_f64(x, c)


cdef inline double exp_sum(const floating *x, floating m, floating *e, Py_ssize_t c) noexcept nogil:
    """sum_j exp(x_j - m) in float64 (fixed order); the exps are left in e (which may be x)."""
    if floating is float:
        return cg_exp_sum_f32(x, m, e, c)
    else:
        return cg_exp_sum_f64(x, m, e, c)


cdef inline void softmax_rows(const floating *x, floating *y, Py_ssize_t r0, Py_ssize_t r1,
                              Py_ssize_t c, bint take_log) noexcept nogil:
    """softmax (or log_softmax) of rows [r0, r1) of a (rows, c) array; y may be x."""
    if floating is float:
        cg_softmax_rows_f32(x, y, r0, r1, c, take_log)
    else:
        cg_softmax_rows_f64(x, y, r0, r1, c, take_log)

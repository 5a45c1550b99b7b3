# Thread count shared by every compiled kernel (see _runtime.pyx).
cdef int num_threads() noexcept nogil

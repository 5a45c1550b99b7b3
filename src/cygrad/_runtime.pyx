# cython: language_level=3
"""OpenMP runtime settings shared by all compiled kernels.

Contention. A kernel's team is capped at the CPUs that other processes leave free
(csrc/cg_contention.h: runnable tasks from /proc, probed every 50 ms): a fork-join
region with a thread that shares its core with a busy process waits whole time slices,
so on a crowded machine fewer threads are faster. Results do not change (kernels are
bitwise identical for any thread count). CYGRAD_ADAPTIVE_THREADS=0 turns it off.

Thread count. cygrad keeps one process-wide count (OpenMP's own setting is per
calling thread, so a count set from the main thread would not reach kernels
called from other Python threads), and each OS thread may override it for
itself (`cygrad.threads(n)`: a context manager that changes nothing that other
threads see). Kernels use min(that count, omp_get_max_threads()), so a
threadpoolctl limit on the OpenMP runtime is honoured too.

Fork. GNU OpenMP's thread pool does not survive fork(): the child inherits the
pool's bookkeeping but not its threads, and its first parallel region waits
for them forever. So once a kernel has asked for more than one thread, a
pthread_atfork handler makes every process forked afterwards run its kernels
on one thread (a one-thread team never touches the pool). A process started
by spawn or forkserver gets a fresh runtime and all its threads.
"""
import warnings

cdef extern from *:
    """
    #if CYGRAD_OPENMP
    #include <omp.h>
    #define CG_HAVE_OPENMP 1
    #else
    #define CG_HAVE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static void omp_set_num_threads(int n) { (void)n; }
    #endif

    #if defined(_MSC_VER)
    #define CG_THREAD_LOCAL __declspec(thread)
    #else
    #define CG_THREAD_LOCAL __thread
    #endif

    /* this OS thread's cygrad.threads(n); 0: none, use the process-wide count */
    static CG_THREAD_LOCAL int cg_thread_override = 0;
    static int cg_get_override(void) { return cg_thread_override; }
    static void cg_set_override(int n) { cg_thread_override = n; }

    /* set once a kernel was given more than one thread: OpenMP may own a pool now */
    static int cg_pool_used = 0;
    /* set in a child forked after that: its kernels run on one thread */
    static int cg_serial_after_fork = 0;

    static void cg_mark_pool_used(void) {
    #if defined(__GNUC__)
        __atomic_store_n(&cg_pool_used, 1, __ATOMIC_RELAXED);
    #else
        cg_pool_used = 1;
    #endif
    }

    /* async-signal-safe: runs in the child between fork() and its return */
    static void cg_atfork_child(void) {
        if (cg_pool_used) cg_serial_after_fork = 1;
    }

    #if defined(_WIN32)
    static int cg_register_atfork(void) { return 0; }
    #else
    #include <pthread.h>
    static int cg_register_atfork(void) {
        return pthread_atfork(NULL, NULL, cg_atfork_child);
    }
    #endif
    """
    int CG_HAVE_OPENMP
    int omp_get_max_threads() nogil
    void omp_set_num_threads(int) nogil
    int cg_get_override() nogil
    void cg_set_override(int) nogil
    int cg_serial_after_fork
    void cg_mark_pool_used() nogil
    int cg_register_atfork()

cdef extern from "cg_contention.h" nogil:
    void cg_contention_init(int enabled)
    int cg_team_size(int wanted)
    int cg_free_cpus()
    int cg_adaptive
    int cg_cpus

cdef int _nthreads = omp_get_max_threads()

if cg_register_atfork() != 0:
    raise ImportError("cygrad: pthread_atfork failed: cannot make forked processes safe")

import os as _os
cg_contention_init(_os.environ.get("CYGRAD_ADAPTIVE_THREADS", "1") not in ("0", "no", "false"))


cdef inline int _requested() noexcept nogil:
    """The calling thread's override if it has one, else the process-wide count."""
    cdef int n = cg_get_override()
    return n if n > 0 else _nthreads


cdef int num_threads() noexcept nogil:
    """Team size for a kernel called from this thread: its override or the process-wide
    count, capped by OpenMP's limit and by the CPUs other processes leave free
    (csrc/cg_contention.h); 1 in a child forked after multi-threaded work."""
    cdef int n = _requested()
    cdef int m
    if cg_serial_after_fork or n < 2:
        return 1
    m = omp_get_max_threads()
    n = n if n < m else m
    n = cg_team_size(n)
    if n > 1:
        cg_mark_pool_used()
    return n


def openmp_enabled():
    """True when the extensions were built with OpenMP."""
    return bool(CG_HAVE_OPENMP)


def effective_threads():
    """The team a kernel called now from this thread would get: get_num_threads() capped
    by OpenMP's own limit (threadpoolctl, or torch.set_num_threads when torch shares the
    OpenMP runtime) and by the CPUs other processes leave free."""
    return int(num_threads())


def adaptive_threads():
    """(on, CPUs we may use, CPUs other processes leave free now): the team of a kernel is
    capped at the free CPUs when on (CYGRAD_ADAPTIVE_THREADS=0 turns it off)."""
    return bool(cg_adaptive), int(cg_cpus), int(min(cg_free_cpus(), cg_cpus))


def serial_after_fork():
    """True in a process forked after cygrad ran multi-threaded: its kernels use one thread."""
    return bool(cg_serial_after_fork)


def get_num_threads():
    """Number of threads the kernels called from this thread use (like
    torch.get_num_threads): this thread's cygrad.threads(n) if one is active, else
    the process-wide count; 1 without OpenMP and in a child forked after
    multi-threaded work."""
    if not CG_HAVE_OPENMP or cg_serial_after_fork:
        return 1
    return int(_requested())


def _check_count(n, int stacklevel):
    """n as a thread count; warn in a serial-after-fork child. (Cython functions have no
    Python frame: stacklevel counts from the nearest Python caller.)"""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > 1 and cg_serial_after_fork:
        warnings.warn(
            f"cygrad: {n} threads requested in a process forked after cygrad ran multi-threaded "
            "kernels; its kernels run on one thread (OpenMP's thread pool does not survive "
            "fork). Start workers with the 'spawn' or 'forkserver' method to use threads.",
            RuntimeWarning, stacklevel=stacklevel)


def set_num_threads(n):
    """Set the number of threads for all kernels, process-wide (like torch.set_num_threads).
    A thread inside cygrad.threads(m) keeps using m until its block ends."""
    global _nthreads
    _check_count(n, 1)
    _nthreads = n
    omp_set_num_threads(n)


def _push_override(n):
    """Give the calling thread n kernel threads; return the state for _pop_override."""
    _check_count(n, 3)  # past cygrad.threads and contextlib, to the `with` line
    state = (cg_get_override(), omp_get_max_threads())
    cg_set_override(n)
    omp_set_num_threads(n)  # this thread's OpenMP limit too, as set_num_threads does
    return state


def _pop_override(state):
    """Restore the calling thread's override and OpenMP limit saved by _push_override."""
    override, omp_limit = state
    cg_set_override(override)
    omp_set_num_threads(omp_limit)

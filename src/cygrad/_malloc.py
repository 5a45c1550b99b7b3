"""Keep a training step's memory in the process (glibc); opt out: CYGRAD_MALLOC_TUNING=0.

A training step frees its whole graph after backward (activations, gradients: megabytes)
and allocates the same sizes again in the next step, and so do the kernels' column
buffers. With glibc's defaults a block above the (adaptive) mmap threshold is mmap'ed and
returned to the OS when freed, and free memory at the top of the heap beyond the trim
threshold is returned too, so every step page-faults its memory back in: measured on the
CNN at batch 64, ~2,200 faults and ~4 ms of a ~5 ms step. At import cygrad sets
M_MMAP_THRESHOLD to 32 MiB (glibc's largest) and M_TRIM_THRESHOLD to 256 MiB, so steps
reuse heap memory; the cost is that up to 256 MiB of freed memory stays with the process.

Nothing is changed on other C libraries, or when the user chose for themselves
(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES set).
"""
import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

status = "not changed"


def tune():
    """Apply the settings above once (see the module docstring); returns the status."""
    global status
    if status != "not changed":
        return status
    if os.environ.get("CYGRAD_MALLOC_TUNING", "1") in ("0", "no", "false"):
        status = "glibc defaults (CYGRAD_MALLOC_TUNING=0)"
    elif any(os.environ.get(k) for k in USER_SETTINGS):
        status = "the user's (MALLOC_*_ / GLIBC_TUNABLES)"
    elif not sys.platform.startswith("linux"):
        status = "system defaults"
    else:
        try:
            libc = ctypes.CDLL(None)
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            status = "system defaults (no mallopt)"
            return status
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
        status = (f"mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold "
                  f"{TRIM_THRESHOLD >> 20} MiB" if ok else "system defaults (mallopt refused)")
    return status

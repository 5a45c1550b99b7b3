"""Threads and build information: show_config, get/set_num_threads, threads()."""
import contextlib
import os
import platform
import sys

from cygrad import _malloc, _runtime
from cygrad.kernels import gemm as _gemm

get_num_threads = _runtime.get_num_threads
set_num_threads = _runtime.set_num_threads


@contextlib.contextmanager
def threads(n):
    """Run the enclosed block with n kernel threads for the calling Python thread only.

    Thread-safe: each Python thread has its own override, so blocks in several threads
    (nested or overlapping in any order) never change the count other threads use, and
    the process-wide count (set_num_threads) is left as it was. Kernels that the block
    starts in other threads use those threads' own counts.
    """
    state = _runtime._push_override(n)
    try:
        yield
    finally:
        _runtime._pop_override(state)


def openmp_runtime():
    """The OpenMP library the kernels run on (Linux: from /proc/self/maps), or None.

    When torch was imported first, cygrad's extensions bind to torch's bundled libgomp:
    the two then share one runtime, so torch.set_num_threads(n) limits cygrad's kernels
    too (as a threadpoolctl limit does), and OpenMP throttles its spinning once torch's
    threads have run a team. Results are unchanged; for timing, run each library in its
    own process."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libgomp" in line or "libomp" in line}
    except OSError:
        return None
    return sorted(paths)[0] if paths else None


def config():
    """The build and run-time configuration as a dict."""
    from cygrad import __version__
    import numpy as np
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "openmp": _runtime.openmp_enabled(),
        "isa": _gemm.get_isa(),
        "isa_supported": [n for n in ("avx512", "avx2", "generic") if _gemm.isa_supported(n)],
        "num_threads": get_num_threads(),
        "cpu_count": os.cpu_count(),
        "malloc": _malloc.status,
        "adaptive_threads": _runtime.adaptive_threads()[0],
        "openmp_runtime": openmp_runtime(),
    }


def show_config(file=None):
    """Print version, OpenMP yes/no, the GEMM instruction-set path and the thread count."""
    c = config()
    lines = [
        f"cygrad {c['version']}",
        f"  python        {c['python']} ({c['platform']})",
        f"  numpy         {c['numpy']}",
        f"  openmp        {'yes' if c['openmp'] else 'no (built serially)'}",
        f"  isa           {c['isa']} (supported: {', '.join(c['isa_supported'])})",
        f"  threads       {c['num_threads']} (of {c['cpu_count']} CPUs)",
        f"  malloc        {c['malloc']}",
        f"  openmp lib    {c['openmp_runtime'] or '-'}"
        + ("  (torch's: torch.set_num_threads limits cygrad too)"
           if c['openmp_runtime'] and "torch" in c['openmp_runtime'] else ""),
        "  contention    " + ("team capped at the CPUs other processes leave free"
                              if c["adaptive_threads"] else "off (CYGRAD_ADAPTIVE_THREADS=0)"),
    ]
    print("\n".join(lines), file=file or sys.stdout)

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
    """Run the enclosed block with n kernel threads, then restore the previous count."""
    previous = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)


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
    ]
    print("\n".join(lines), file=file or sys.stdout)

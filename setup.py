"""Build the compiled kernels.

OpenMP is detected by compiling and running a small test program (as
scikit-learn's build helpers do); without it, or with CYGRAD_NO_OPENMP=1, the
extensions build serially. The GEMM micro-kernels for each instruction set are
compiled in their own translation units with a `#pragma GCC target`, and the
driver picks one at run time, so no -march flag is needed and the build runs on
any x86-64 (and on aarch64 with the generic path).
"""
import glob
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = sorted(glob.glob(os.path.join("csrc", "*.c")))

OMP_TEST = textwrap.dedent("""
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\\n", n > 0);
        return 0;
    }
""")


def _openmp_flags(compiler):
    """Return (compile_args, link_args) for OpenMP, or None when unavailable."""
    if os.environ.get("CYGRAD_NO_OPENMP", "") not in ("", "0"):
        return None
    if sys.platform == "win32":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OMP_TEST)
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                exe = os.path.join(tmp, "omp_test")
                compiler.link_executable(objs, exe, extra_postargs=lflags)
                out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
                if out.returncode == 0 and out.stdout.strip() == "1":
                    return cflags, lflags
            except Exception:  # compile, link or run failed: try the next
                continue
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        omp = _openmp_flags(self.compiler)
        if omp is None:
            print("cygrad: building WITHOUT OpenMP (kernels run serially)")
        else:
            print("cygrad: building with OpenMP:", " ".join(omp[0]))
        base = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function"]
        if self.compiler.compiler_type == "msvc":
            base = ["/O2"]
        sanitize = os.environ.get("CYGRAD_SANITIZE", "")
        san = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"] if sanitize else []
        for ext in self.extensions:
            ext.extra_compile_args = base + san + (omp[0] if omp else [])
            ext.extra_link_args = san + (omp[1] if omp else [])
            ext.define_macros = list(ext.define_macros or []) + [
                ("CYGRAD_OPENMP", "1" if omp else "0")]
        super().build_extensions()


def ext(name, sources):
    return Extension(
        name,
        sources=sources,
        include_dirs=[np.get_include(), "csrc"],
        depends=sorted(glob.glob(os.path.join("csrc", "*.h"))),  # rebuild when a header changes
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


# Each .pyx under src/cygrad becomes an extension; _runtime and kernels.gemm
# carry the C GEMM (other kernels reach it through gemm.pxd).
extensions = []
for pyx in sorted(glob.glob(os.path.join("src", "cygrad", "**", "*.pyx"), recursive=True)):
    mod = os.path.splitext(os.path.relpath(pyx, "src"))[0].replace(os.sep, ".")
    sources = [pyx]
    if mod == "cygrad.kernels.gemm":
        sources += CSRC
    extensions.append(ext(mod, sources))

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)

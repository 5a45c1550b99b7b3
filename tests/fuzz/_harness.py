"""Shared runner for the atheris harnesses in this folder.

Each harness is a script: python tests/fuzz/fuzz_<name>.py [libFuzzer flags] [corpus dir]
e.g. -seed=1 -max_total_time=600 (fixed seed, 10 minutes) or -runs=500. Without a corpus
folder a temporary one is seeded with the harness's valid examples. A crash (signal),
or an exception the harness does not allow, makes libFuzzer stop with a non-zero status
and write the input to crash-<sha1> in the current folder.
"""
import os
import resource
import sys
import tempfile

# Absurd but valid sizes (e.g. a huge padding) ask for tens of GB: cap the address space
# so they raise MemoryError instead of getting the process killed. Not under ASan, which
# reserves terabytes of shadow memory (there ASAN_OPTIONS=allocator_may_return_null=1).
MEMORY_CAP = 3 << 30


def main(test_one_input, seeds=(), libfuzzer=True):
    import atheris

    argv = list(sys.argv)
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, resource.RLIM_INFINITY))
        argv.insert(1, f"-rss_limit_mb={2 * MEMORY_CAP >> 20}")
    if not any(not a.startswith("-") for a in argv[1:]):
        corpus = tempfile.mkdtemp(prefix="cygrad-fuzz-")
        for i, data in enumerate(seeds):
            with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
                f.write(data)
        argv.append(corpus)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()

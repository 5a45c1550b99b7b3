"""cygrad: a CPU deep-learning library with compiled, verified kernels."""
__version__ = "0.1.0"

from cygrad import kernels, reference, testing
from cygrad._config import config, get_num_threads, set_num_threads, show_config, threads

__all__ = ["kernels", "reference", "config", "show_config", "get_num_threads",
           "set_num_threads", "threads", "__version__"]

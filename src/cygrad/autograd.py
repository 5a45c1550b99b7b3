"""Reverse-mode automatic differentiation: graph nodes, backward, grad mode.

A Tensor wraps a NumPy array (`.data`). An op whose inputs include a tensor that
requires a gradient (while grad mode is on) records one Node: the input tensors
and a closure that maps the gradient of the op's output to the gradients of its
inputs. `loss.backward()` collects the nodes reachable from the
loss, runs them in reverse creation order (a node is always created after the
nodes of its inputs, so that order is topological), sums the gradients reaching
each tensor, and adds the gradients of leaves into their `.grad`. Nodes free what
they saved once run (unless retain_graph=True), so a graph is used once, as in torch.

State belongs to the call: a layer used twice records two nodes, and its parameter
gradient is the sum of both. Nodes are coarse (one per layer-level op; the loss
and its gradient are one fused kernel), so the tape costs a few microseconds per
step. The arithmetic of Tensor itself (+ - * / @, reductions, indexing, ...) is
NumPy, except 2-D matrix products, which run on the active backend's GEMM
(cygrad/tensor.py holds the Tensor; this module, the graph).

Graph rules follow torch.autograd: gradients accumulate into leaves; backward on a
non-scalar needs `gradient=`; a second backward through freed nodes raises
RuntimeError; no_grad / enable_grad / set_grad_enabled are thread-local; an
in-place change (`+=`, an optimizer step) to a tensor an unfinished graph saved
makes that graph's backward raise instead of using the new values.
"""
import contextlib
import itertools
import threading

import numpy as np

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "Node",
           "bump_versions"]


# ---- grad mode (thread-local, on by default in every thread) -----------------------------


class _Mode(threading.local):
    enabled = True  # each thread starts with grad mode on (read as a class attribute)


_mode = _Mode()


def is_grad_enabled():
    """True when ops record graph nodes (the default; off inside no_grad)."""
    return _mode.enabled


def _set_enabled(flag):
    _mode.enabled = flag


class _GradMode(contextlib.ContextDecorator):
    """A context manager and decorator that sets grad mode and restores it on exit."""

    enabled = True

    def __new__(cls, func=None):
        self = super().__new__(cls)
        if func is not None:  # used as a bare decorator: @no_grad
            if not callable(func):
                raise TypeError(f"{cls.__name__}() takes no arguments")
            self.__init__()
            return self(func)
        return self

    def __init__(self):
        self._previous = threading.local()

    def _recreate_cm(self):  # a fresh instance per decorated call (reentrant, thread-safe)
        return type(self)()

    def __enter__(self):
        stack = getattr(self._previous, "stack", None)
        if stack is None:
            stack = self._previous.stack = []
        stack.append(is_grad_enabled())
        _set_enabled(self.enabled)
        return None

    def __exit__(self, *exc):
        _set_enabled(self._previous.stack.pop())
        return False


class no_grad(_GradMode):
    """Ops record nothing inside (torch.no_grad): for evaluation and in-place updates."""

    enabled = False


class enable_grad(_GradMode):
    """Ops record again inside, e.g. within a no_grad block (torch.enable_grad)."""

    enabled = True


class set_grad_enabled:
    """set_grad_enabled(mode): sets grad mode now; as a context manager, restores it on exit."""

    def __init__(self, mode):
        self._previous = is_grad_enabled()
        _set_enabled(bool(mode))

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        _set_enabled(self._previous)
        return False


# ---- graph nodes ----------------------------------------------------------------------

_sequence = itertools.count()

# In-place changes (`+=` in no_grad, an optimizer step) stamp the tensor's _version with a
# new value of this global counter; a node remembers the counter's value when it was
# recorded, so backward can tell whether an input changed since (and checks nothing when
# no in-place change happened anywhere, the usual case).
_epoch = 0


def bump_versions(tensors):
    """Mark tensors as changed in place (their data no longer what graphs saved)."""
    global _epoch
    _epoch += 1
    for t in tensors:
        t._version = _epoch


# returned by a node's backward for an input whose gradient it already added into
# that leaf's .grad buffer (a GEMM with beta=1 instead of a temporary and an add)
ACCUMULATED = object()


class Node:
    """One recorded op: `backward(grad_out) -> tuple of input gradients` (None where an
    input needs none, ACCUMULATED where it was added into a leaf's buffer already)."""

    __slots__ = ("name", "backward", "inputs", "epoch", "seq", "retained", "__weakref__")

    def __init__(self, name, backward, inputs):
        self.name = name
        self.backward = backward
        self.inputs = inputs
        self.epoch = _epoch
        self.seq = next(_sequence)
        self.retained = None

    def __repr__(self):
        return f"<{self.name}>"


def needs_grad(t):
    """Whether an op should record a node for (and compute the gradient of) tensor t."""
    return t.requires_grad and _mode.enabled


def buffer_grad(t):
    """t's gradient array, when t is a leaf whose .grad is a buffer that gradients may be
    added into in place (a Parameter's view of the model's flat gradient buffer)."""
    return t.grad if t._grad_is_buffer and t._node is None else None


def _accumulate_leaf(t, g):
    if g.shape != t.data.shape:
        raise RuntimeError(f"internal error: gradient of shape {g.shape} for a tensor of shape "
                           f"{t.data.shape}")
    if t._grad_is_buffer:
        buf = t.grad
        np.add(buf, g, out=buf)
    elif t.grad is None:
        t.grad = np.array(g, dtype=t.data.dtype, copy=True)
    else:
        t.grad = t.grad + g


def _backward(root, gradient, retain_graph):
    """Run the graph behind `root` with d root = gradient (see the module docstring)."""
    node = root._node
    if node is None:  # a leaf: its gradient is `gradient` itself
        _accumulate_leaf(root, gradient)
        return
    nodes, seen, stack = [], {node}, [node]
    while stack:
        n = stack.pop()
        nodes.append(n)
        for t in n.inputs:
            m = t._node
            if m is not None and m not in seen:
                seen.add(m)
                stack.append(m)
    nodes.sort(key=_seq, reverse=True)
    grads = {node: gradient}
    for n in nodes:
        g = grads.pop(n, None)
        if g is None:
            continue
        fn = n.backward
        if fn is None:
            raise RuntimeError(
                f"Trying to backward through the graph a second time ({n.name} already ran and "
                "freed what it saved). Specify retain_graph=True on the first backward() call if "
                "you need to backward twice, or recompute the forward pass.")
        if n.epoch != _epoch:
            for t in n.inputs:
                if t._version > n.epoch:
                    raise RuntimeError(
                        f"a tensor {n.name} saved for the gradient (shape {t.data.shape}) was "
                        "modified in place after it was used, e.g. by an optimizer step or `+=`; "
                        "call backward() before changing it")
        if n.retained is not None:
            owner = n.retained()
            if owner is not None:
                owner.grad = g.copy() if owner.grad is None else owner.grad + g
        results = fn(g)
        for t, gi in zip(n.inputs, results):
            if gi is None or gi is ACCUMULATED:
                continue
            m = t._node
            if m is None:
                if t.requires_grad:
                    _accumulate_leaf(t, gi)
            else:
                prev = grads.get(m)
                grads[m] = gi if prev is None else prev + gi
        if not retain_graph:
            n.backward = None
            n.inputs = ()


def _seq(n):
    return n.seq

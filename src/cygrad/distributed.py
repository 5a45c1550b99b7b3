"""Data-parallel training over MPI (mpi4py): one Allreduce of the flat gradient per step.

Every rank holds the whole model. `init(model, optimizer)` reads rank and size from
the launcher (`mpiexec -n K`) and broadcasts rank 0's parameters and optimizer state,
so ranks start identical however they were seeded. `Context.shard(loader)` gives each
rank its share of every epoch's global order; after backward, `average_gradients`
sums the flat gradient buffer over the ranks in place and divides by the size, so each
rank applies the same update a single process would with the global batch.

Sharding (as torch's DistributedSampler): epoch e's global order is the loader's own
permutation of (seed, e) -- the seed is rank 0's -- padded with its first samples to a
multiple of K, and rank r takes positions r, r+K, r+2K, ... So every rank has the same
number of samples and batches, and the union of the ranks' i-th batches (size B each)
is the single-process loader's i-th batch of size K*B: K ranks x batch B train like one
process x batch K*B (for a dataset size divisible by K*B; otherwise a few samples of
the last batch are repeated, as in torch). Validation shards are not padded.

Ranks must agree on what they train: `broadcast` checks that every rank's model has as
many parameters as rank 0's, and `shard` that every rank's dataset has the same number of
samples and the same batch size, before anything is exchanged (else MPI fails with
"Message truncated" or waits forever). A disagreement raises ValueError on every rank,
with each rank's value.

Errors instead of hangs: MPI collectives have no timeouts, so a rank that raised and
left the loop would leave the others waiting forever. Every collective here is
preceded by a check -- an Allreduce (MAX) of a one-byte error flag. A rank that raises
inside `fit` joins the next check with the flag set (`Context.fail`), the ranks
exchange the messages, the failing rank re-raises its exception and every other rank
raises RemoteError naming it. Outside `fit`, `init` installs a sys.excepthook that
calls MPI_Abort for an uncaught exception (as `python -m mpi4py` does), so a job never
hangs on a rank that died.

Two hosts: tests/test_distributed.py runs the ranks in two network namespaces joined
by a veth pair (hydra's ssh launcher replaced by `ip netns exec`, UCX_TLS=tcp,self so the
gradients cross the veth over TCP) and checks the result against one process.

Reduction order: MPI leaves the order of a sum to the implementation. With 2 ranks a
sum is a single IEEE addition (exact order-free); for more ranks MPICH and Open MPI pick
a fixed algorithm per (size, message length), so runs repeat, and every rank receives
the same result.
"""
import sys
import time
from contextlib import contextmanager

import numpy as np

from cygrad.data import DataLoader
from cygrad.nn.parameter import shared_buffers

INSTALL = "pip install 'cygrad[mpi]'  (mpi4py plus the MPICH runtime; or pip install mpi4py " \
          "against your cluster's MPI)"


class RemoteError(RuntimeError):
    """Another rank raised; `.rank` and `.message` say which and what."""

    def __init__(self, rank, message):
        super().__init__(f"rank {rank} failed: {message}")
        self.rank, self.message = rank, message


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"distributed training needs mpi4py and an MPI runtime: {INSTALL}") from e
    return MPI


def available():
    """True when mpi4py (and so an MPI library) can be imported."""
    try:
        _mpi()
    except ImportError:
        return False
    return True


class Context:
    """Rank, size and the collectives of a data-parallel run (see the module docstring)."""

    def __init__(self, comm=None):
        self.MPI = _mpi()
        self.comm = comm if comm is not None else self.MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._flag = np.zeros(1, np.uint8)

    # -- errors ------------------------------------------------------------------------
    def _exchange(self, message):
        self._flag[0] = message is not None
        self.comm.Allreduce(self.MPI.IN_PLACE, self._flag, op=self.MPI.MAX)
        if not self._flag[0]:
            return None
        return self.comm.allgather(message)

    def check(self):
        """Collective: raise RemoteError if any rank reported a failure (Context.fail)."""
        messages = self._exchange(None)
        if messages is not None:
            rank, msg = next((r, m) for r, m in enumerate(messages) if m is not None)
            raise RemoteError(rank, msg)

    def fail(self, exc):
        """Collective (matches the other ranks' next check): report exc to every rank."""
        if getattr(exc, "_cygrad_reported", False) or isinstance(exc, RemoteError):
            return
        try:
            exc._cygrad_reported = True  # outer handlers must not report it again
        except AttributeError:
            pass
        self._exchange(f"{type(exc).__name__}: {exc}")

    @contextmanager
    def errors(self):
        """Any exception raised in the block is reported to the other ranks, then re-raised."""
        try:
            yield
        except BaseException as e:
            self.fail(e)
            raise

    # -- state ---------------------------------------------------------------------------
    def broadcast(self, model, optimizer=None):
        """Copy rank 0's parameters (and the optimizer's state_dict: state, step counts,
        parameter groups) to all ranks. Nothing is rebound: the parameters stay in the
        flat buffers the optimizer steps."""
        self.check()
        params = model.parameters()
        extra = [] if optimizer is None else [p for p in optimizer.params
                                              if id(p) not in set(map(id, params))]
        self.agree("parameters (model, optimizer-only)",
                   (sum(p.data.size for p in params), sum(p.data.size for p in extra)))
        self._bcast_data(params)
        if optimizer is not None:
            self._bcast_data(extra)
            state = self.comm.bcast(optimizer.state_dict() if self.rank == 0 else None, root=0)
            if self.rank != 0:
                optimizer.load_state_dict(state)

    def _bcast_data(self, params):
        """Bcast the parameters' data: one call when they share a flat buffer end to end."""
        shared = shared_buffers(params)
        for data in [shared[0]] if shared is not None else [p.data for p in params]:
            self.comm.Bcast(data, root=0)

    def agree(self, what, value):
        """Collective: raise ValueError on every rank unless every rank passed an equal
        `value` (plain numbers, tuples, None); `what` names it in the message."""
        values = self.comm.allgather(value)
        if any(v != values[0] for v in values):
            each = "; ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise ValueError(f"the ranks disagree on their {what} ({each}): every rank must "
                             "train the same model on the same data")

    def average_gradients(self, grad, reduction="mean"):
        """Collective: grad (the flat buffer) <- the sum over ranks, / size for mean losses."""
        self.check()
        if self.size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, grad, op=self.MPI.SUM)
            if reduction != "sum":
                grad /= self.size

    def sum(self, values):
        """Collective: the elementwise sum over ranks of a list of numbers (float64)."""
        self.check()
        buf = np.asarray(values, np.float64).copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def max(self, value):
        self.check()
        return self.comm.allreduce(float(value), op=self.MPI.MAX)

    def bcast(self, obj):
        self.check()
        return self.comm.bcast(obj, root=0)

    # -- data ----------------------------------------------------------------------------
    def shard(self, loader, pad=True):
        """This rank's ShardedLoader over a DataLoader (a ShardedLoader is returned as is,
        None as None). Collective: every rank passes a loader over as many samples, with the
        same batch size (or None), else every rank raises ValueError."""
        if isinstance(loader, ShardedLoader):
            return loader
        if loader is not None and not isinstance(loader, DataLoader):
            raise TypeError(f"distributed training shards a cygrad.data.DataLoader, got "
                            f"{type(loader).__name__}")
        self.check()
        self.agree("datasets (samples, batch size, drop_last)", None if loader is None else
                   (len(loader.dataset), loader.batch_size, loader.drop_last))
        if loader is None:
            return None
        seed = self.bcast(loader.seed)  # one global order: rank 0's seed
        return ShardedLoader(loader, self.rank, self.size, pad=pad, seed=seed)


class ShardedLoader(DataLoader):
    """Rank `rank` of `size`'s share of a DataLoader: positions rank, rank+size, ... of each
    epoch's global order (padded to a multiple of size when pad=True). Batches, transform
    and set_epoch as the DataLoader."""

    def __init__(self, loader, rank, size, pad=True, seed=None):
        if not 0 <= rank < size:
            raise ValueError(f"rank must be in [0, {size}), got {rank}")
        self.__dict__.update(loader.__dict__)
        if seed is not None:
            self.seed = int(seed)
        self.rank, self.size, self.pad = int(rank), int(size), bool(pad)

    def num_samples(self):
        n = len(self.dataset)
        return -(-n // self.size) if self.pad else len(range(self.rank, n, self.size))

    def __len__(self):
        n, b = self.num_samples(), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch=None):
        full = super().order(epoch)
        if self.pad:
            full = np.resize(full, -(-full.size // self.size) * self.size)  # repeats the start
        return full[self.rank::self.size]


_context = None


def _abort_on_uncaught(comm):
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        time.sleep(0.2)  # let the launcher forward the traceback before the abort kills it
        comm.Abort(1)

    sys.excepthook = hook


def init(model=None, optimizer=None):
    """The process's Context (created once); broadcasts rank 0's model and optimizer state.

    Raises ImportError saying how to install the `mpi` extra when mpi4py is missing.
    """
    global _context
    if _context is None:
        _context = Context()
        if _context.size > 1:
            _abort_on_uncaught(_context.comm)
    if model is not None:
        _context.broadcast(model, optimizer)
    return _context


def rank():
    """This process's rank (0 without mpi4py)."""
    return init().rank if available() else 0


__all__ = ["init", "Context", "ShardedLoader", "RemoteError", "available", "rank"]

"""cygrad.nn.init: gains, fans and bounds as torch.nn.init's, statistics of every init,
in-place writes (flat buffer views stay views), seeding, orthogonality, errors."""
import math
import warnings

import numpy as np
import pytest

import cygrad as cg
from cygrad.nn import init

# Statistics: n = 2^20 iid draws. The sample mean has standard error sigma/sqrt(n) and
# the sample std a relative standard error sqrt((kurtosis - 1) / (4 n)) (<= 1/sqrt(2n)
# for the normal (kurtosis 3) and the uniform (1.8)). Every bound below is 5 standard
# errors (a two-sided miss has probability < 6e-7; the seeds are fixed anyway).
N_ROWS, N_COLS = 1024, 1024
N = N_ROWS * N_COLS
MEAN_TOL = 5 / math.sqrt(N)          # times sigma
STD_RTOL = 5 / math.sqrt(2 * N)

NONLINEARITIES = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]
# (shape, layer): Linear (out, in), Conv1d/2d/3d (C_out, C_in, *kernel)
SHAPES = [(10, 20), (1, 1), (3, 7), (16, 3, 5, 5), (32, 1, 3, 3), (8, 4, 3), (6, 3, 2, 2, 2)]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def assert_stats(values, mean, std):
    """values' sample mean and std within 5 standard errors of (mean, std)."""
    v = np.asarray(values, np.float64).ravel()
    assert v.size == N
    assert abs(v.mean() - mean) <= MEAN_TOL * std, (v.mean(), mean)
    assert abs(v.std() - std) <= STD_RTOL * std, (v.std(), std)


# ---- gains, fans, bounds: torch's numbers ---------------------------------------------

@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_calculate_gain_equals_torch(torch, nonlinearity):
    for param in ([None, 0, 0.2, 1, 3, -0.5] if nonlinearity == "leaky_relu" else [None]):
        ours = init.calculate_gain(nonlinearity, param)
        theirs = torch.nn.init.calculate_gain(nonlinearity, param)
        assert ours == theirs and type(ours) is type(theirs)


def test_calculate_gain_values():
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01 ** 2))
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("selu") == 0.75


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_equal_torch(torch, shape):
    ours = init._calculate_fan_in_and_fan_out(np.empty(shape, np.float32))
    assert ours == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init._calculate_fan_in_and_fan_out(cg.nn.Parameter(np.empty(shape))) == ours


def test_fans_of_linear_and_conv2d_weights():
    lin, conv = cg.nn.Linear(20, 10), cg.nn.Conv2d(3, 16, 5)
    assert init._calculate_fan_in_and_fan_out(lin.weight) == (20, 10)
    assert init._calculate_fan_in_and_fan_out(conv.weight) == (3 * 25, 16 * 25)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(lin.bias)


class Recorder(np.random.Generator):
    """A numpy Generator that remembers the distribution parameters it was asked for."""

    def __init__(self):
        super().__init__(np.random.PCG64(0))
        self.calls = []

    def uniform(self, low=0.0, high=1.0, size=None):
        self.calls.append(("uniform", low, high))
        return super().uniform(low, high, size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        self.calls.append(("normal", loc, scale))
        return super().normal(loc, scale, size)


def _torch_call(torch, monkeypatch, fn, shape, kwargs):
    """The (distribution, p1, p2) torch.nn.init's fn asks its tensor for."""
    calls = []
    for name in ("uniform", "normal"):
        monkeypatch.setattr(torch.Tensor, name + "_",
                            lambda self, a, b, generator=None, _n=name: calls.append((_n, a, b)))
    getattr(torch.nn.init, fn)(torch.empty(shape), **kwargs)
    monkeypatch.undo()
    return calls


INIT_CASES = [
    ("uniform_", {}), ("uniform_", {"a": -0.3, "b": 2.5}),
    ("normal_", {}), ("normal_", {"mean": 1.5, "std": 0.25}),
    ("xavier_uniform_", {}), ("xavier_uniform_", {"gain": 2.5}),
    ("xavier_normal_", {}), ("xavier_normal_", {"gain": math.sqrt(2)}),
    ("kaiming_uniform_", {}), ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_uniform_", {"a": 0.2, "mode": "FAN_IN", "nonlinearity": "leaky_relu"}),
    ("kaiming_uniform_", {"nonlinearity": "tanh"}),
    ("kaiming_normal_", {}), ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", {"a": 1, "nonlinearity": "leaky_relu"}),
]


@pytest.mark.parametrize("fn, kwargs", INIT_CASES)
@pytest.mark.parametrize("shape", [(10, 20), (16, 3, 5, 5), (4, 2, 3)])
def test_bound_and_std_are_torchs(torch, monkeypatch, fn, kwargs, shape):
    """The exact U(a, b) or N(mean, std) torch's function would sample, for our function."""
    rec = Recorder()
    getattr(init, fn)(np.empty(shape, np.float32), generator=rec, **kwargs)
    assert rec.calls == _torch_call(torch, monkeypatch, fn, shape, kwargs)


# ---- statistics -----------------------------------------------------------------------

FAN_IN, FAN_OUT = N_COLS, N_ROWS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn, kwargs, kind, bound_or_std", [
    ("uniform_", {"a": -1.0, "b": 3.0}, "uniform", None),
    ("normal_", {"mean": 2.0, "std": 0.5}, "normal", 0.5),
    ("xavier_uniform_", {"gain": 2.0}, "uniform", 2 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("xavier_normal_", {"gain": 2.0}, "normal", 2 * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("kaiming_uniform_", {"nonlinearity": "relu"}, "uniform", math.sqrt(2) * math.sqrt(3 / FAN_IN)),
    ("kaiming_uniform_", {"a": math.sqrt(5)}, "uniform", 1 / math.sqrt(FAN_IN)),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, "normal",
     math.sqrt(2 / FAN_OUT)),
])
def test_statistics(dtype, fn, kwargs, kind, bound_or_std):
    w = np.empty((N_ROWS, N_COLS), dtype)
    assert getattr(init, fn)(w, generator=3, **kwargs) is w
    if fn == "uniform_":
        lo, hi = kwargs["a"], kwargs["b"]
    elif kind == "uniform":
        lo, hi = -bound_or_std, bound_or_std
    if kind == "uniform":
        # every value inside [lo, hi] (rounding to the dtype may reach hi), and both ends
        # approached within 1e-4 of the width (each missed with probability e^-105)
        assert w.min() >= lo and w.max() <= hi
        assert w.min() < lo + 1e-4 * (hi - lo) and w.max() > hi - 1e-4 * (hi - lo)
        assert_stats(w, (lo + hi) / 2, (hi - lo) / math.sqrt(12))
    else:
        assert_stats(w, kwargs.get("mean", 0.0), bound_or_std)


def test_orthogonal_statistics():
    """Entries of a Haar-random orthogonal matrix: mean 0, variance gain^2 / n."""
    w = init.orthogonal_(np.empty((N_ROWS, N_COLS)), gain=3.0, generator=1)
    assert_stats(w, 0.0, 3.0 / math.sqrt(N_COLS))


@pytest.mark.parametrize("shape", [(5, 5), (3, 8), (8, 3), (16, 3, 3, 3), (4, 2, 3), (1, 6),
                                   (6, 1)])
@pytest.mark.parametrize("gain", [1, 0.5, math.sqrt(2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthogonal_rows_or_columns_orthonormal(shape, gain, dtype):
    w = init.orthogonal_(np.empty(shape, dtype), gain=gain, generator=0)
    m = w.reshape(shape[0], -1).astype(np.float64)
    rows, cols = m.shape
    gram = m @ m.T if rows <= cols else m.T @ m
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(min(rows, cols)), atol=tol)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 2, 2, 2), (5, 5)])
def test_orthogonal_is_torchs_algorithm(torch, monkeypatch, shape):
    """Fed the same standard normal matrix, torch's orthogonal_ (QR, then the columns of Q
    times sign(diag R)) gives our matrix."""
    ours = init.orthogonal_(np.empty(shape), gain=1.7, generator=5)
    rows = shape[0]
    drawn = np.random.default_rng(5).standard_normal((rows, int(np.prod(shape)) // rows))

    def fill(self, mean=0.0, std=1.0, generator=None):
        self.copy_(torch.from_numpy(drawn))
        return self

    monkeypatch.setattr(torch.Tensor, "normal_", fill)
    theirs = torch.nn.init.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=1.7)
    monkeypatch.undo()
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-12)


# ---- in place, seeding ----------------------------------------------------------------

def test_init_in_place_on_a_parameter_keeps_the_flat_buffer_view():
    model = cg.nn.Sequential(cg.nn.Linear(6, 5, dtype=np.float64), cg.nn.ReLU(),
                             cg.nn.Linear(5, 2, dtype=np.float64))
    data, grad = model.flat_buffers()
    w, b = model[0].weight, model[0].bias
    view = w.data
    for call in (lambda: init.xavier_uniform_(w), lambda: init.orthogonal_(w),
                 lambda: init.kaiming_normal_(w, nonlinearity="relu"), lambda: init.normal_(w)):
        assert call() is w
        assert w.data is view and w.data.base is data
        np.testing.assert_array_equal(data[:30], w.data.ravel())
    assert init.zeros_(b) is b and not data[30:35].any()
    assert init.ones_(model[2].bias) is model[2].bias and (data[-2:] == 1).all()
    assert model.flat_buffers()[0] is data  # still one buffer: nothing was rebound

    opt = cg.optim.SGD(model.parameters(), lr=0.1)
    init.constant_(w, 0.5)
    assert opt.data is data and (data[:30] == 0.5).all()


def test_init_on_tensor_and_ndarray_returns_the_same_object():
    t = cg.tensor(np.zeros((4, 3)), requires_grad=True)
    arr = t.data
    assert init.uniform_(t, 2.0, 3.0) is t and t.data is arr and (arr >= 2).all()
    a = np.zeros((4, 3), np.float32)
    assert init.kaiming_uniform_(a) is a and a.any()
    strided = np.zeros((4, 6))[:, ::2]  # a non-contiguous view: written through
    init.constant_(strided, 7.0)
    assert (strided == 7).all() and (strided.base[:, 1::2] == 0).all()


def test_init_after_forward_makes_backward_refuse():
    """torch's init bumps the version counter; a graph that saved the weight sees it."""
    lin = cg.nn.Linear(3, 2, dtype=np.float64)
    x = cg.tensor(np.ones((4, 3)), requires_grad=True)
    loss = lin(x).sum()
    init.xavier_normal_(lin.weight)
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_seeds_and_global_generator():
    a, b = np.empty((50, 40)), np.empty((50, 40))
    init.xavier_uniform_(a, generator=11)
    init.xavier_uniform_(b, generator=np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    init.xavier_uniform_(b, generator=12)
    assert not np.array_equal(a, b)
    c = np.empty((50, 40), np.float32)
    init.xavier_uniform_(c, generator=11)  # float32: the float64 draws rounded
    np.testing.assert_array_equal(c, a.astype(np.float32))

    cg.manual_seed(4)
    init.normal_(a)
    init.normal_(b)
    cg.manual_seed(4)
    again = init.normal_(np.empty((50, 40)))
    np.testing.assert_array_equal(again, a)
    assert not np.array_equal(a, b)  # the global generator advances between calls
    assert init.generator() is init.generator(None)


def test_default_layer_init_is_kaiming_uniform_sqrt5():
    """Linear's default init (fan_in_uniform) is kaiming_uniform_(a=sqrt(5)) on the same draws."""
    lin = cg.nn.Linear(30, 20, dtype=np.float64, rng=9)
    w = init.kaiming_uniform_(np.empty((20, 30)), a=math.sqrt(5), generator=9)
    np.testing.assert_allclose(lin.weight.data, w, rtol=1e-14)
    assert init.float_dtype("float32") == np.float32


# ---- errors ---------------------------------------------------------------------------

def _bad_calls(m, t):
    """Wrong arguments, as calls on module m (torch.nn.init or cygrad's) and a tensor maker t."""
    return [
        lambda: m.calculate_gain("softplus"),
        lambda: m.calculate_gain("leaky_relu", True),
        lambda: m.calculate_gain("leaky_relu", "0.1"),
        lambda: m.kaiming_uniform_(t((3, 4)), mode="fan_avg"),
        lambda: m.kaiming_normal_(t((3, 4)), nonlinearity="gelu"),
        lambda: m.kaiming_uniform_(t((5,))),
        lambda: m.kaiming_normal_(t(())),
        lambda: m.xavier_uniform_(t((5,))),
        lambda: m.xavier_normal_(t((0, 0))),
        lambda: m.orthogonal_(t((5,))),
        lambda: m.uniform_(t((3,)), 1.0, 0.0),
        lambda: m.uniform_(t((3,)), 0.0, math.inf),
        lambda: m.normal_(t((3,)), 0.0, -1.0),
    ]


@pytest.mark.parametrize("i", range(len(_bad_calls(None, None))))
def test_errors_have_torchs_types(torch, i):
    with pytest.raises(Exception) as theirs:
        _bad_calls(torch.nn.init, torch.empty)[i]()
    with pytest.raises(type(theirs.value)) as ours:
        _bad_calls(init, np.empty)[i]()
    assert str(ours.value)


def test_error_messages():
    with pytest.raises(ValueError, match="Unsupported nonlinearity softplus"):
        init.calculate_gain("softplus")
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(np.empty((3, 4)), mode="fan_avg")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(cg.nn.Parameter(np.zeros(3)))
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(np.empty(3))
    with pytest.raises(RuntimeError, match="from=1.0 > to=0.0"):
        init.uniform_(np.empty(3), 1.0, 0.0)
    with pytest.raises(RuntimeError, match="to=1e\\+300 is out of bounds for float32"):
        init.uniform_(np.empty(3, np.float32), 0.0, 1e300)
    with pytest.raises(ZeroDivisionError, match="fan_in \\+ fan_out is 0"):
        init.xavier_uniform_(np.empty((0, 0)))


def test_target_type_dtype_and_writability():
    with pytest.raises(TypeError, match="Tensor, Parameter or numpy ndarray, got list"):
        init.normal_([[0.0, 1.0]])
    with pytest.raises(TypeError, match="floating dtype, got int64"):
        init.uniform_(np.zeros((2, 2), np.int64))
    frozen = np.zeros((2, 2))
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        init.xavier_uniform_(frozen)
    assert not frozen.any()


def test_constant_never_truncates():
    a = np.zeros(3, np.int64)
    assert (init.constant_(a, 4) == 4).all()
    for val, dtype in [(0.5, np.int64), (300, np.uint8), (-1, np.uint32), (2, np.bool_),
                       (1e300, np.float32), (2 ** 70, np.int64)]:
        with pytest.raises(ValueError, match="cannot be stored"):
            init.constant_(np.zeros(3, dtype), val)
    with pytest.raises(TypeError, match="real number"):
        init.constant_(np.zeros(3), 1j)
    b = np.zeros(2, np.float32)
    init.constant_(b, 0.1)
    assert (b == np.float32(0.1)).all()
    init.constant_(b, -math.inf)
    assert (b == -np.inf).all()


def test_zero_element_tensors():
    """kaiming_*: torch's warning and no change; the others: nothing to fill."""
    for fn in (init.kaiming_uniform_, init.kaiming_normal_):
        with pytest.warns(UserWarning, match="zero-element"):
            assert fn(np.empty((0, 3))).shape == (0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in (init.xavier_uniform_, init.xavier_normal_, init.orthogonal_, init.uniform_,
                   init.normal_, init.zeros_):
            assert fn(np.empty((0, 3))).shape == (0, 3)

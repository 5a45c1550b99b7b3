"""cygrad.autograd: Tensor, its ops and their derivatives, and torch's graph rules."""
import threading

import numpy as np
import pytest

import cygrad as cg
from cygrad.testing import gradcheck

F64 = np.float64
RNG = np.random.default_rng(0)


def rand(*shape, low=None):
    """float64 standard normal values (|x| >= low when given: away from kinks)."""
    x = RNG.standard_normal(shape)
    if low is not None:
        x = np.where(np.abs(x) < low, np.sign(x + 1e-300) * (low + np.abs(x)), x)
    return x


def positive(*shape):
    return RNG.uniform(0.5, 2.0, shape)


# ---- the Tensor -------------------------------------------------------------------------

def test_tensor_attributes_and_conversions():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = cg.Tensor(a)
    assert t.data is a and t.shape == (2, 3) and t.dtype == np.float32 and t.ndim == 2
    assert t.grad is None and not t.requires_grad and t.is_leaf and t.grad_fn is None
    assert len(t) == 2 and t.size() == (2, 3) and t.size(1) == 3 and t.numel() == 6
    assert t.numpy() is a and np.asarray(t) is a and np.array(t, copy=True) is not a
    assert t.sum().item() == 15.0 and isinstance(t.sum().item(), float)
    assert float(t[1, 2]) == 5.0 and int(t[1, 2]) == 5 and f"{t.sum():.1f}" == "15.0"
    assert repr(t).startswith("tensor([[0., 1., 2.]")
    assert [r.tolist() for r in t] == [[0, 1, 2], [3, 4, 5]]
    c = cg.tensor(a, requires_grad=True)
    assert c.data is not a and c.requires_grad and "requires_grad=True" in repr(c)
    assert "grad_fn=<MulBackward>" in repr(c * 2)
    assert cg.tensor([1.0, 2.0]).dtype == np.float32   # torch's default dtype
    assert cg.tensor([1, 2]).dtype == np.int64 and cg.tensor(np.zeros(2)).dtype == F64
    assert cg.tensor([1.0], dtype=F64).dtype == F64
    d = c.detach()
    assert d.data is c.data and not d.requires_grad
    with pytest.raises(ValueError, match="one element"):
        t.item()
    with pytest.raises(TypeError, match="floating-point"):
        cg.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="0-d"):
        len(t.sum())


def test_python_scalars_and_arrays_mix_with_tensors():
    x = cg.tensor(np.ones((2, 2), np.float32), requires_grad=True)
    assert (x * 2.0).dtype == np.float32 and (2.0 - x).dtype == np.float32
    y = np.full((2, 2), 3.0, np.float32) * x + x / 2 - 1  # ndarray first: the Tensor's op runs
    assert isinstance(y, cg.Tensor) and y.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 3.5, np.float32))


def test_broadcast_gradients_are_reduced_to_each_operand():
    a = cg.tensor(rand(3, 1), requires_grad=True)
    b = cg.tensor(rand(4), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,)
    np.testing.assert_allclose(a.grad[:, 0], np.full(3, b.data.sum()))
    np.testing.assert_allclose(b.grad, np.full(4, a.data.sum()))
    x32 = cg.tensor(np.ones(3, np.float32), requires_grad=True)
    (x32 * np.ones(3)).sum().backward()  # promoted to float64; the gradient comes back float32
    assert x32.grad.dtype == np.float32


# every Tensor op against finite differences (float64; broadcasting, 1-D and batched matmul)
TENSOR_OPS = {
    "add": (lambda a, b: a + b, [(3, 4), (4,)]),
    "add_scalar": (lambda a: 2.5 + a, [(3,)]),
    "sub": (lambda a, b: a - b, [(3, 1), (1, 4)]),
    "rsub": (lambda a: 1.0 - a, [(2, 3)]),
    "mul": (lambda a, b: a * b, [(2, 3), (2, 1)]),
    "div": (lambda a, b: a / (b * b + 1.0), [(2, 3), (3,)]),
    "rdiv": (lambda a: 3.0 / (a * a + 1.0), [(4,)]),
    "matmul": (lambda a, b: a @ b, [(3, 4), (4, 5)]),
    "matmul_vec_mat": (lambda a, b: a @ b, [(4,), (4, 5)]),
    "matmul_mat_vec": (lambda a, b: a @ b, [(3, 4), (4,)]),
    "matmul_dot": (lambda a, b: a @ b, [(4,), (4,)]),
    "matmul_batched": (lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    "matmul_batched_both": (lambda a, b: a @ b, [(2, 3, 4), (1, 4, 2)]),
    "neg": (lambda a: -a, [(3,)]),
    "pow2": (lambda a: a ** 2, [(3, 2)]),
    "pow3": (lambda a: a ** 3, [(3,)]),
    "pow0": (lambda a: a ** 0 * a, [(3,)]),
    "rpow": (lambda a: 2.0 ** a, [(3,)]),
    "sum": (lambda a: a.sum(), [(3, 4)]),
    "sum_dim": (lambda a: a.sum(1), [(3, 4)]),
    "sum_dims_keepdim": (lambda a: a.sum((0, 2), keepdim=True), [(2, 3, 4)]),
    "sum_numpy_names": (lambda a: a.sum(axis=0, keepdims=True), [(3, 4)]),
    "mean": (lambda a: a.mean(), [(3, 4)]),
    "mean_dim": (lambda a: a.mean(-1), [(3, 4)]),
    "reshape": (lambda a: a.reshape(4, 3) * np.arange(12.0).reshape(4, 3), [(3, 4)]),
    "view": (lambda a: a.view(-1), [(3, 4)]),
    "flatten": (lambda a: a.flatten(1), [(2, 3, 4)]),
    "transpose": (lambda a: a.transpose(0, 2), [(2, 3, 4)]),
    "T": (lambda a: a.T @ a, [(3, 2)]),
    "permute": (lambda a: a.permute(2, 0, 1), [(2, 3, 4)]),
    "squeeze_unsqueeze": (lambda a: a.unsqueeze(0).squeeze(2), [(3, 1, 2)]),
    "exp": (lambda a: a.exp(), [(3,)]),
    "abs": (lambda a: a.abs(), [(3, 3)]),
    "clamp": (lambda a: a.clamp(-0.5, 0.5), [(4, 4)]),
    "clamp_min": (lambda a: a.clamp(min=0.1), [(4,)]),
    "max_dim": (lambda a: a.max(1)[0], [(3, 4)]),
    "max_dim_keepdim": (lambda a: a.max(dim=0, keepdim=True).values, [(3, 4)]),
    "max_all": (lambda a: a.max(), [(3, 4)]),
    "min_dim": (lambda a: a.min(-1).values, [(3, 4)]),
    "index_int": (lambda a: a[1], [(3, 4)]),
    "index_slice": (lambda a: a[1:, ::2], [(3, 4)]),
    "index_negative_none_ellipsis": (lambda a: a[..., -1, None], [(2, 3, 4)]),
    "index_int_array_repeats": (lambda a: a[[0, 0, 2]], [(3, 4)]),
    "index_mixed": (lambda a: a[np.array([2, 0, 2]), 1:3], [(3, 4)]),
    "index_bool": (lambda a: a[np.array([True, False, True])], [(3, 4)]),
    "index_pairs": (lambda a: a[np.arange(3), np.array([1, 1, 3])], [(3, 4)]),
    "to_float32_and_back": (lambda a: (a.to(np.float32) * 2).double(), [(3,)]),
}


@pytest.mark.parametrize("name", sorted(TENSOR_OPS))
def test_tensor_op_gradients(name):
    fn, shapes = TENSOR_OPS[name]
    inputs = [rand(*s, low=0.05) for s in shapes]
    tol = dict(eps=1e-2, rtol=1e-4) if name == "to_float32_and_back" else {}  # linear: big steps
    gradcheck(fn, inputs, **tol)


@pytest.mark.parametrize("name,fn", [("log", lambda a: a.log()), ("sqrt", lambda a: a.sqrt()),
                                      ("pow_half", lambda a: a ** 0.5)])
def test_positive_domain_gradients(name, fn):
    gradcheck(fn, [positive(3, 2)])


def test_max_ties_and_index_results():
    a = cg.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]), requires_grad=True)
    values, indices = a.max(1)
    np.testing.assert_array_equal(indices.data, [1, 0])  # the first maximum, as torch
    values.sum().backward()
    np.testing.assert_array_equal(a.grad, [[0, 1, 0], [1, 0, 0]])
    a.grad = None
    a.max().backward()  # ties share the gradient of the global max evenly
    np.testing.assert_array_equal(a.grad, [[0, 0.5, 0.5], [0, 0, 0]])
    assert a.argmax().item() == 1 and a.argmax(1).tolist() == [1, 0]


# ---- graph rules ----------------------------------------------------------------------------

def test_gradients_accumulate_into_leaves_and_reused_tensors_sum():
    x = cg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * x + x          # x used by three ops' inputs
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 5.0])
    (x * 3).sum().backward()  # accumulates, as torch
    np.testing.assert_array_equal(x.grad, [6.0, 8.0])
    h = x * 2               # a non-leaf used twice
    (h * h + h).sum().backward()
    np.testing.assert_array_equal(x.grad, [6 + 2 * 2 * 2 + 2, 8 + 2 * 4 * 2 + 2])


def test_second_backward_needs_retain_graph():
    x = cg.tensor(np.array([1.0, -2.0]), requires_grad=True)
    loss = (x.exp() * 2).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, 4 * np.exp(x.data))
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    assert loss.grad_fn.inputs == ()  # the nodes freed what they held


def test_backward_on_non_scalar_needs_gradient():
    x = cg.tensor(np.ones((2, 2)), requires_grad=True)
    y = x * 3
    with pytest.raises(RuntimeError, match="scalar outputs"):
        y.backward()
    with pytest.raises(RuntimeError, match="shape"):
        y.backward(np.ones(3))
    y.backward(np.full((2, 2), 2.0))
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 6.0))


def test_nothing_is_recorded_without_an_input_that_requires_grad():
    a, b = cg.tensor(np.ones(3)), cg.tensor(np.ones(3))
    c = cg.nn.functional.relu(a * b + 1)
    assert c.grad_fn is None and not c.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        c.sum().backward()


def test_no_grad_and_enable_grad_context_managers_and_decorators():
    x = cg.tensor(np.ones(2), requires_grad=True)
    assert cg.is_grad_enabled()
    with cg.no_grad():
        assert not cg.is_grad_enabled() and (x * 2).grad_fn is None
        with cg.enable_grad():
            assert (x * 2).grad_fn is not None
        assert (x * 2).grad_fn is None
    assert cg.is_grad_enabled()

    @cg.no_grad()
    def f(t):
        return t * 2

    @cg.no_grad
    def g(t):
        return f(t) + t

    assert f(x).grad_fn is None and g(x).grad_fn is None and (x * 2).grad_fn is not None
    with cg.set_grad_enabled(False):
        assert not cg.is_grad_enabled()
    assert cg.is_grad_enabled()
    try:
        cg.set_grad_enabled(False)
        assert not cg.is_grad_enabled()
    finally:
        cg.set_grad_enabled(True)


def test_grad_mode_is_thread_local():
    seen = {}

    def worker():
        seen["other thread"] = cg.is_grad_enabled()

    with cg.no_grad():
        th = threading.Thread(target=worker)
        th.start()
        th.join()
        seen["this thread"] = cg.is_grad_enabled()
    assert seen == {"other thread": True, "this thread": False}


def test_detach_and_retain_grad():
    x = cg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h.detach()).sum().backward()  # the detached factor is a constant
    np.testing.assert_array_equal(x.grad, 3 * h.data)
    np.testing.assert_array_equal(h.grad, h.data)
    with pytest.raises(RuntimeError, match="detach"):
        h.requires_grad_(False)


def test_in_place_changes_are_refused_or_detected():
    w = cg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w -= 1.0
    loss = (w * w).sum()
    with cg.no_grad():
        w -= 0.5   # a hand-written update, as torch allows
    np.testing.assert_array_equal(w.data, [0.5, 1.5])
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()  # the saved w is not the one the loss was computed from
    h = w * 2
    with pytest.raises(RuntimeError, match="recorded op"):
        h += 1
    model = cg.nn.Linear(2, 1, dtype=F64)
    opt = cg.optim.SGD(model.parameters(), lr=0.1)
    out = model(np.ones((1, 2))).sum()
    opt.step()  # changes the weights the graph saved
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()


def test_manual_sgd_on_parameters_updates_the_flat_buffer():
    model = cg.nn.Sequential(cg.nn.Linear(3, 1, dtype=F64))
    data, grad = model.flat_buffers()
    before = data.copy()
    model(np.ones((2, 3))).sum().backward()
    with cg.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    np.testing.assert_allclose(data, before - 0.1 * grad)


def test_parameter_data_assignment_copies_into_the_flat_buffer():
    model = cg.models.mlp(sizes=(4, 3, 2), dtype=F64, seed=0)
    data, grad = model.flat_buffers()
    opt = cg.optim.SGD(model.parameters(), lr=1.0)
    w = model[0].weight
    view = w.data
    w.data = np.ones((3, 4))
    assert w.data is view and data[:12].tolist() == [1.0] * 12  # still the buffer
    w.grad = np.full((3, 4), 2.0)
    opt.step()
    np.testing.assert_array_equal(w.data, np.full((3, 4), -1.0))
    w.grad = None
    assert not w.grad.any() and w.grad.base is grad
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        w.data = np.ones((4, 3))
    with pytest.raises(TypeError, match="complex128"):
        w.data = np.ones((3, 4), complex)
    assert isinstance(w, cg.Tensor) and w.requires_grad and w.is_leaf


# ---- cg.nn.functional against finite differences, on both backends -------------------------

def _ce_targets():
    return RNG.integers(0, 4, 5)


FUNCTIONAL = {
    "linear": (lambda F, x, w, b: F.linear(x, w, b), [(5, 3), (4, 3), (4,)]),
    "linear_no_bias_3d": (lambda F, x, w: F.linear(x, w), [(2, 5, 3), (4, 3)]),
    "conv2d": (lambda F, x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [(2, 3, 6, 5), (4, 3, 3, 3), (4,)]),
    "conv2d_dilated_unbatched": (lambda F, x, w: F.conv2d(x, w, dilation=2, padding="same"),
                                 [(2, 6, 6), (3, 2, 3, 3)]),
    "relu": (lambda F, x: F.relu(x), [(4, 5)]),
    "leaky_relu": (lambda F, x: F.leaky_relu(x, 0.2), [(4, 5)]),
    "sigmoid": (lambda F, x: F.sigmoid(x), [(4, 5)]),
    "tanh": (lambda F, x: F.tanh(x), [(4, 5)]),
    "softmax": (lambda F, x: F.softmax(x, dim=-1), [(4, 5)]),
    "softmax_dim0_3d": (lambda F, x: F.softmax(x, 0), [(3, 2, 4)]),
    "log_softmax": (lambda F, x: F.log_softmax(x, dim=1), [(4, 5)]),
    "log_softmax_1d": (lambda F, x: F.log_softmax(x, 0), [(5,)]),
    "avg_pool2d": (lambda F, x: F.avg_pool2d(x, 3, stride=2, padding=1), [(2, 3, 6, 6)]),
    "dropout": (lambda F, x: _seeded(F.dropout, x, 0.3), [(6, 7)]),
    "flatten": (lambda F, x: F.flatten(x, 1), [(2, 3, 4)]),
    "cross_entropy": (lambda F, x: F.cross_entropy(x, np.array([0, 3, 1, 1, 2])), [(5, 4)]),
    "cross_entropy_smoothing_sum": (lambda F, x: F.cross_entropy(
        x, np.array([0, 3, 1, 1, 2]), reduction="sum", label_smoothing=0.2), [(5, 4)]),
    "cross_entropy_probabilities": (lambda F, x: F.cross_entropy(
        x, np.full((5, 4), 0.25)), [(5, 4)]),
    "cross_entropy_kdim": (lambda F, x: F.cross_entropy(x, np.arange(12).reshape(2, 2, 3) % 3),
                           [(2, 3, 2, 3)]),
    "cross_entropy_unbatched": (lambda F, x: F.cross_entropy(x, np.array(2)), [(4,)]),
    "nll_loss": (lambda F, x: F.nll_loss(F.log_softmax(x, 1), np.array([0, 3, 1, 1, 2])), [(5, 4)]),
    "mse_loss": (lambda F, x, t: F.mse_loss(x, t), [(3, 4), (3, 4)]),
    "l1_loss_sum": (lambda F, x, t: F.l1_loss(x, t, reduction="sum"), [(3, 4), (3, 4)]),
    "bce_with_logits": (lambda F, x: F.binary_cross_entropy_with_logits(
        x, np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.3]])), [(2, 3)]),
    "bce": (lambda F, x: F.binary_cross_entropy(
        F.sigmoid(x), np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.3]])), [(2, 3)]),
}


def _seeded(dropout, x, p):
    cg.manual_seed(5)  # the same mask on every call
    try:
        return dropout(x, p)
    finally:
        cg.manual_seed(0)


@pytest.mark.parametrize("backend", ["kernels", "reference"])
@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_functional_gradients(name, backend):
    fn, shapes = FUNCTIONAL[name]
    inputs = [rand(*s, low=0.05) for s in shapes]
    if name.startswith("l1"):
        inputs[1] = inputs[0] + np.where(RNG.random(inputs[0].shape) < 0.5, -0.5, 0.5)
    with cg.use_backend(backend):
        gradcheck(lambda *t: fn(cg.nn.functional, *t), inputs)


@pytest.mark.parametrize("backend", ["kernels", "reference"])
def test_max_pool2d_gradient(backend):
    x = RNG.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) / 7.0  # no ties
    with cg.use_backend(backend):
        gradcheck(lambda t: cg.nn.functional.max_pool2d(t, 2), [x])
        gradcheck(lambda t: cg.nn.functional.max_pool2d(t, 3, stride=2, padding=1), [x])
        gradcheck(lambda t: cg.nn.functional.max_pool2d(t[0], 2), [x])  # unbatched (C, H, W)


def test_mse_target_gradient_and_broadcast_warning():
    x = cg.tensor(rand(3, 4), requires_grad=True)
    t = cg.tensor(rand(4), requires_grad=True)
    with pytest.warns(UserWarning, match="target size"):
        loss = cg.nn.functional.mse_loss(x, t)
    loss.backward()
    d = x.data - t.data
    np.testing.assert_allclose(x.grad, 2 * d / 12)
    np.testing.assert_allclose(t.grad, -2 * d.sum(0) / 12)


def test_functional_refuses_what_it_cannot_compute():
    F = cg.nn.functional
    x = np.zeros((2, 3, 5, 5), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    for call in (lambda: F.max_pool2d(x, 2, dilation=2),
                 lambda: F.mse_loss(np.zeros(2), np.zeros(2), weight=np.ones(2))):
        with pytest.raises(NotImplementedError, match="not supported"):
            call()
    soft = cg.tensor(np.full((2, 3), 1 / 3), requires_grad=True)
    with pytest.raises(NotImplementedError, match="target"):
        F.cross_entropy(np.zeros((2, 3)), soft)
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))  # out of range, as the kernel says
    with pytest.raises(TypeError, match="dtype float64, weight has dtype float32"):
        F.linear(np.zeros((2, 3)), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\)"):
        F.conv2d(np.zeros((2, 2, 5, 5), np.float32), w)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        F.softmax(np.zeros((2, 3)))

"""cygrad.nn layers and functions against torch (float64, <= 1e-12 relative): the options
a PyTorch user reaches for (padding='same', groups, pooling options, BatchNorm, losses
with reduction='none', class weights and ignore_index)."""
import numpy as np
import pytest

import cygrad as cg

torch = pytest.importorskip("torch")
F, TF = cg.nn.functional, torch.nn.functional


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300)) if b.size else 0.0


def compare(ours, theirs, arrays, check_grads=True, tol=1e-12):
    """Run ours(*tensors) and theirs(*torch tensors) on the same float64 arrays; compare the
    outputs and the gradients of every input for a random upstream gradient."""
    xs = [cg.tensor(a, requires_grad=check_grads) for a in arrays]
    ts = [torch.tensor(a, requires_grad=check_grads) for a in arrays]
    y, ty = ours(*xs), theirs(*ts)
    assert y.shape == tuple(ty.shape)
    assert _rel(y.data, ty.detach().numpy()) <= tol
    if check_grads:
        g = np.random.default_rng(7).standard_normal(y.shape)
        y.backward(g)
        ty.backward(torch.tensor(g))
        for i, (x, t) in enumerate(zip(xs, ts)):
            assert _rel(x.grad, t.grad.numpy()) <= tol, f"gradient of input {i}"


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on even kernels
@pytest.mark.parametrize("k,d", [(3, 1), (2, 1), (4, 1), (2, 3), (3, 2)])
def test_conv2d_padding_same_including_even_kernels(k, d):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, k, k)),
              rng.standard_normal(4)]
    compare(lambda x, w, b: F.conv2d(x, w, b, padding="same", dilation=d),
            lambda x, w, b: TF.conv2d(x, w, b, padding="same", dilation=d), arrays)
    compare(lambda x, w, b: F.conv2d(x, w, b, padding="valid"),
            lambda x, w, b: TF.conv2d(x, w, b, padding="valid"), arrays)


def _loss_case(ours, theirs, x, *extra, tol=1e-12):
    """Loss values and input gradients of ours(x) and theirs(x) (extra: non-grad arrays)."""
    xt, tx = cg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y = ours(xt, *extra)
    ty = theirs(tx, *[torch.from_numpy(np.asarray(e)) for e in extra])
    assert y.shape == tuple(ty.shape)
    assert _rel(y.data, ty.detach().numpy()) <= tol
    g = np.random.default_rng(3).standard_normal(y.shape)
    y.backward(g)
    ty.backward(torch.tensor(g))
    assert _rel(xt.grad, tx.grad.numpy()) <= tol


RNG = np.random.default_rng(11)
LOGITS = RNG.standard_normal((6, 4))
LABELS = np.array([0, 3, -100, 1, 2, 3])          # -100: torch's default ignore_index
WEIGHT = np.array([0.5, 2.0, 1.0, 3.0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kwargs", [{}, {"weight": WEIGHT}, {"ignore_index": 3},
                                    {"weight": WEIGHT, "label_smoothing": 0.2},
                                    {"label_smoothing": 0.1, "ignore_index": 1}])
def test_cross_entropy_and_nll_options(reduction, kwargs):
    labels = LABELS if "ignore_index" not in kwargs else np.abs(LABELS) % 4
    kw = dict(kwargs, reduction=reduction)
    wrap = lambda d: {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in d.items()}  # noqa: E731
    _loss_case(lambda x, t: F.cross_entropy(x, t, **kw),
               lambda x, t: TF.cross_entropy(x, t, **wrap(kw)), LOGITS, labels)
    nll_kw = {k: v for k, v in kw.items() if k != "label_smoothing"}
    _loss_case(lambda x, t: F.nll_loss(F.log_softmax(x, 1), t, **nll_kw),
               lambda x, t: TF.nll_loss(TF.log_softmax(x, 1), t, **wrap(nll_kw)), LOGITS, labels)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_k_dimensional_and_probabilities(reduction):
    x = RNG.standard_normal((2, 4, 3, 5))
    t = RNG.integers(0, 4, (2, 3, 5))
    t[0, 0, :2] = -100
    w = torch.tensor(WEIGHT)
    _loss_case(lambda a, b: F.cross_entropy(a, b, weight=WEIGHT, reduction=reduction),
               lambda a, b: TF.cross_entropy(a, b, weight=w, reduction=reduction), x, t)
    probs = RNG.dirichlet(np.ones(4), 6)
    _loss_case(lambda a, b: F.cross_entropy(a, b, weight=WEIGHT, reduction=reduction),
               lambda a, b: TF.cross_entropy(a, b, weight=w, reduction=reduction), LOGITS, probs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_elementwise_losses_with_weights_and_reduction_none(reduction):
    x, target = RNG.standard_normal((5, 3)), RNG.random((5, 3))
    w, pos = RNG.random(3) + 0.5, RNG.random(3) * 3
    tw, tpos = torch.tensor(w), torch.tensor(pos)
    _loss_case(lambda a, t: F.mse_loss(a, t, reduction=reduction),
               lambda a, t: TF.mse_loss(a, t, reduction=reduction), x, target)
    _loss_case(lambda a, t: F.l1_loss(a, t, reduction=reduction),
               lambda a, t: TF.l1_loss(a, t, reduction=reduction), x, target)
    _loss_case(lambda a, t: F.binary_cross_entropy(F.sigmoid(a), t, weight=w, reduction=reduction),
               lambda a, t: TF.binary_cross_entropy(torch.sigmoid(a), t, weight=tw,
                                                    reduction=reduction), x, target)
    _loss_case(lambda a, t: F.binary_cross_entropy_with_logits(a, t, weight=w, pos_weight=pos,
                                                               reduction=reduction),
               lambda a, t: TF.binary_cross_entropy_with_logits(a, t, weight=tw, pos_weight=tpos,
                                                                reduction=reduction), x, target)


def test_loss_modules_register_their_weights_as_buffers():
    ce = cg.nn.CrossEntropyLoss(weight=WEIGHT, reduction="none")
    assert list(ce.state_dict()) == list(torch.nn.CrossEntropyLoss(
        weight=torch.tensor(WEIGHT)).state_dict()) == ["weight"]
    out = ce(LOGITS, np.abs(LABELS) % 4)
    assert out.shape == (6,)
    bce = cg.nn.BCEWithLogitsLoss(pos_weight=np.ones(3))
    assert list(bce.state_dict()) == ["pos_weight"]


@pytest.mark.parametrize("groups,c_out", [(4, 8), (4, 12), (1, 5)])
def test_grouped_and_depthwise_conv2d_modules(groups, c_out):
    ours = cg.nn.Conv2d(4, c_out, 3, padding="same", groups=groups, dtype=np.float64)
    theirs = torch.nn.Conv2d(4, c_out, 3, padding="same", groups=groups).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(groups).standard_normal((3, 4, 7, 6))
    compare(lambda a: ours(a), lambda a: theirs(a), [x])  # output and input gradient
    assert _rel(ours.weight.grad, theirs.weight.grad.numpy()) <= 1e-12
    assert _rel(ours.bias.grad, theirs.bias.grad.numpy()) <= 1e-12


@pytest.mark.parametrize("options", [dict(ceil_mode=True), dict(padding=1, ceil_mode=True),
                                     dict(count_include_pad=False, padding=1),
                                     dict(divisor_override=3), dict(stride=2, ceil_mode=True,
                                                                    count_include_pad=False)])
def test_pooling_modules_with_torch_options(options):
    x = np.random.default_rng(1).permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 5.0
    compare(lambda a: cg.nn.AvgPool2d(3, **options)(a),
            lambda a: torch.nn.AvgPool2d(3, **options)(a), [x])
    max_opts = {k: v for k, v in options.items() if k in ("stride", "padding", "ceil_mode")}
    compare(lambda a: cg.nn.MaxPool2d(3, **max_opts)(a),
            lambda a: torch.nn.MaxPool2d(3, **max_opts)(a), [x])


def test_max_pool_returns_indices_as_torch():
    x = np.random.default_rng(2).permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6).astype(np.float64)
    y, idx = cg.nn.MaxPool2d(2, return_indices=True)(x)
    ty, tidx = torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(y.data, ty.numpy())
    np.testing.assert_array_equal(idx.data, tidx.numpy())


@pytest.mark.parametrize("layout", [(6, 4), (6, 4, 5), (6, 4, 3, 5)])
@pytest.mark.parametrize("kwargs", [{}, dict(momentum=None), dict(affine=False),
                                    dict(track_running_stats=False), dict(eps=1e-3, momentum=0.3)])
def test_batch_norm_train_steps_then_eval_match_torch(layout, kwargs):
    cls, tcls = ((cg.nn.BatchNorm2d, torch.nn.BatchNorm2d) if len(layout) == 4 else
                 (cg.nn.BatchNorm1d, torch.nn.BatchNorm1d))
    ours, theirs = cls(4, dtype=np.float64, **kwargs), tcls(4, **kwargs).double()
    rng = np.random.default_rng(len(layout))
    if ours.affine:
        for p in (ours.weight, ours.bias):
            p.data = rng.standard_normal(4)
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for step in range(5):
        x = rng.standard_normal(layout) * 3 + step
        compare(lambda a: ours(a), lambda a: theirs(a), [x])
        if ours.affine:
            assert _rel(ours.weight.grad, theirs.weight.grad.numpy()) <= 1e-12
            assert _rel(ours.bias.grad, theirs.bias.grad.numpy()) <= 1e-12
            ours.zero_grad()
            theirs.zero_grad()
    for k, v in theirs.state_dict().items():
        assert _rel(ours.state_dict()[k], v.numpy()) <= 1e-12, k
    ours.eval()
    theirs.eval()
    compare(lambda a: ours(a), lambda a: theirs(a), [rng.standard_normal(layout)])


def test_batch_norm_state_dict_exchanges_both_ways_with_torch():
    ours = cg.models.cnn(seed=0, batch_norm=True)
    T = torch.nn
    theirs = T.Sequential(T.Conv2d(1, 32, 3, bias=False), T.BatchNorm2d(32), T.ReLU(), T.MaxPool2d(2),
                          T.Conv2d(32, 64, 3, bias=False), T.BatchNorm2d(64), T.ReLU(), T.MaxPool2d(2),
                          T.Flatten(), T.Linear(1600, 128, bias=False), T.BatchNorm1d(128), T.ReLU(),
                          T.Linear(128, 10))
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    ours(x)  # a train step moves the running statistics
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert list(theirs.state_dict()) == list(ours.state_dict())
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        want = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(x).data, want, rtol=1e-4, atol=1e-5)
    other = cg.models.cnn(seed=3, batch_norm=True)
    other.load_state_dict(theirs.state_dict())
    for (k, a), b in zip(other.state_dict().items(), ours.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert other.state_dict()["1.num_batches_tracked"] == 1


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, "inf"])
@pytest.mark.parametrize("max_norm", [0.1, 100.0])
def test_clip_grad_norm_and_value_match_torch(norm_type, max_norm):
    ours = cg.models.mlp(sizes=(6, 5, 3), dtype=np.float64, seed=0)
    theirs = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(),
                                 torch.nn.Linear(5, 3)).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((4, 6))
    F.cross_entropy(ours(x), np.array([0, 1, 2, 1])).backward()
    TF.cross_entropy(theirs(torch.tensor(x)), torch.tensor([0, 1, 2, 1])).backward()
    tn = float("inf") if norm_type == "inf" else norm_type
    total = cg.nn.utils.clip_grad_norm_(ours.parameters(), max_norm, norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm, tn)
    assert _rel(total.data, t_total.numpy()) <= 1e-12
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        assert _rel(p.grad, tp.grad.numpy()) <= 1e-12
    cg.nn.utils.clip_grad_value_(ours.parameters(), 0.01)
    torch.nn.utils.clip_grad_value_(theirs.parameters(), 0.01)
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        assert _rel(p.grad, tp.grad.numpy()) <= 1e-12 and np.abs(p.grad).max() <= 0.01

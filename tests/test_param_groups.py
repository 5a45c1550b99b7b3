"""Parameter groups, freezing, duplicates and flat-buffer safety of cygrad.optim, with
torch.optim as the oracle: the same MLP trained by both, group for group."""
import warnings

import numpy as np
import pytest

import cygrad as cg
import cygrad.nn.functional as F
from cygrad import distributed, optim

torch = pytest.importorskip("torch")

SIZES = (6, 5, 4, 3)
FIRST, MIDDLE, LAST = ["0.weight", "0.bias"], ["2.weight", "2.bias"], ["4.weight", "4.bias"]
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((16, SIZES[0])), rng.integers(0, SIZES[-1], 16)
TX, TY = torch.from_numpy(X), torch.from_numpy(Y)


def models(seed=0):
    """(cygrad MLP, torch MLP with the same weights), float64."""
    model = cg.models.mlp(SIZES, dtype=np.float64, seed=seed)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers += [torch.nn.ReLU()] if i else []
        layers.append(torch.nn.Linear(a, b))
    tmodel = torch.nn.Sequential(*layers).double()
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    return model, tmodel


def groups(model, spec):
    """spec: [(parameter names, hyperparameters)] -> param groups of `model` (either library)."""
    named = dict(model.named_parameters())
    return [dict(hyper, params=[named[n] for n in names]) for names, hyper in spec]


def train_step(model, opt, tmodel, topt):
    loss = F.cross_entropy(model(X), Y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    tloss = torch.nn.functional.cross_entropy(tmodel(TX), TY)
    topt.zero_grad()
    tloss.backward()
    topt.step()


def assert_same(model, tmodel, rtol=1e-10):
    theirs = tmodel.state_dict()
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, theirs[k].numpy(), rtol=rtol, atol=1e-12, err_msg=k)


def count_calls(monkeypatch, name):
    """Record every call of the compiled kernel `name` (the active backend's)."""
    calls, real = [], getattr(cg.kernels, name)
    monkeypatch.setattr(cg.kernels, name,
                        lambda *a, **k: (calls.append(a[0].size), real(*a, **k))[1])
    return calls


# the last layer first (not the model's order: the optimizer moves them to its own buffer),
# each group with its own hyperparameters
GROUP_CASES = [
    ("SGD", dict(lr=0.1), [dict(lr=0.05, momentum=0.9, nesterov=True), dict(weight_decay=0.1)]),
    ("SGD", dict(lr=0.1, momentum=0.8), [dict(dampening=0.5), dict(maximize=True, momentum=0.0)]),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.3), [dict(lr_decay=0.01), dict(eps=1e-3)]),
    ("RMSprop", dict(lr=0.01), [dict(centered=True, momentum=0.5),
                                dict(alpha=0.9, weight_decay=0.1)]),
    ("Adam", dict(lr=0.01), [dict(amsgrad=True, betas=(0.8, 0.9)),
                             dict(lr=0.02, weight_decay=0.1)]),
    ("Adam", dict(lr=0.01), [dict(decoupled_weight_decay=True, weight_decay=0.3),
                             dict(maximize=True)]),
    ("AdamW", dict(lr=0.01), [dict(weight_decay=0.5), dict(amsgrad=True, lr=0.005)]),
]


@pytest.mark.parametrize("name,defaults,hypers", GROUP_CASES)
def test_groups_match_torch_with_one_kernel_call_per_group(name, defaults, hypers, monkeypatch):
    model, tmodel = models()
    spec = [(LAST, hypers[0]), (FIRST + MIDDLE, hypers[1])]
    opt = getattr(optim, name)(groups(model, spec), **defaults)
    topt = getattr(torch.optim, name)(groups(tmodel, spec), foreach=False, **defaults)
    kernel = {"SGD": "sgd_step", "Adagrad": "adagrad_step", "RMSprop": "rmsprop_step"}.get(name)
    kernels = [kernel] if kernel else ["adam_step", "adamw_step"]
    calls = [count_calls(monkeypatch, k) for k in kernels]
    for _ in range(6):
        train_step(model, opt, tmodel, topt)
    assert_same(model, tmodel)
    sizes = sorted(sum(calls, []))
    assert sizes == sorted([3 * 4 + 3, 6 * 5 + 5 + 5 * 4 + 4] * 6)  # one call per group and step


def test_adagrad_starts_each_group_at_its_own_initial_accumulator_value():
    """(torch starts every parameter at the constructor's value, ignoring the group's)"""
    model, _ = models()
    opt = optim.Adagrad(groups(model, [(LAST, dict(initial_accumulator_value=0.3)), (FIRST, {})]),
                        initial_accumulator_value=0.1)
    assert np.all(opt.state["sum"][:15] == 0.3) and np.all(opt.state["sum"][15:] == 0.1)


def test_named_parameters_are_accepted_as_torch_does():
    model, tmodel = models()
    opt = optim.SGD(model.named_parameters(), lr=0.1)
    topt = torch.optim.SGD(tmodel.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == topt.param_groups[0]["param_names"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == FIRST + MIDDLE + LAST
    named = list(model.named_parameters())
    with pytest.raises(ValueError, match="with/without names"):
        optim.SGD([named[0], named[1][1]])
    with pytest.raises(ValueError, match="with/without names"):
        optim.SGD([{"params": named[:2]}, {"params": [p for _, p in named[2:]]}])


def test_a_hyperparameter_changed_between_steps_applies_at_the_next_step():
    model, tmodel = models()
    spec = [(FIRST, dict(lr=0.01)), (MIDDLE + LAST, dict(lr=0.02))]
    opt = optim.Adam(groups(model, spec))
    topt = torch.optim.Adam(groups(tmodel, spec), foreach=False)
    for k in range(8):
        if k == 3:
            for o in (opt, topt):
                o.param_groups[1]["lr"] = 0.1
                o.param_groups[0]["betas"] = (0.5, 0.9)
                o.param_groups[0]["weight_decay"] = 0.2
        train_step(model, opt, tmodel, topt)
    assert_same(model, tmodel)


def test_an_empty_group_is_allowed_as_in_torch():
    model, tmodel = models()
    spec = [([], dict(lr=1.0)), (FIRST + MIDDLE + LAST, {})]
    opt = optim.SGD(groups(model, spec), lr=0.1)
    topt = torch.optim.SGD(groups(tmodel, spec), lr=0.1)
    for _ in range(2):
        train_step(model, opt, tmodel, topt)
    assert_same(model, tmodel)
    assert opt.state_dict()["param_groups"][0]["params"] == []
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([{"params": []}])


def test_lr_property_reads_the_first_group_and_sets_all():
    model, _ = models()
    opt = optim.SGD(groups(model, [(FIRST, dict(lr=0.5)), (MIDDLE, {})]), lr=0.1)
    assert opt.lr == 0.5 and opt.param_groups[1]["lr"] == 0.1
    opt.lr = 0.01
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]


def test_momentum_switched_on_later_starts_its_buffer_then():
    model, tmodel = models()
    opt, topt = optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(tmodel.parameters(), lr=0.1)
    for k in range(6):
        if k == 2:
            opt.param_groups[0]["momentum"] = topt.param_groups[0]["momentum"] = 0.9
        train_step(model, opt, tmodel, topt)
    assert_same(model, tmodel)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_add_param_group_keeps_state_and_matches_torch(name):
    """Model order (the buffer is reused) and reversed order (the parameters move)."""
    for first_part, later in [(FIRST + MIDDLE, LAST), (LAST, FIRST)]:
        model, tmodel = models()
        kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.01)
        opt = getattr(optim, name)(groups(model, [(first_part, {})]), **kw)
        topt = getattr(torch.optim, name)(groups(tmodel, [(first_part, {})]), foreach=False, **kw)
        for k in range(6):
            if k == 3:
                opt.add_param_group(groups(model, [(later, dict(lr=0.02))])[0])
                topt.add_param_group(groups(tmodel, [(later, dict(lr=0.02))])[0])
            train_step(model, opt, tmodel, topt)
        assert_same(model, tmodel)
        assert opt.data.size == sum(p.data.size for g in opt.param_groups for p in g["params"])


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
                                     ("Adam", dict(lr=0.01, weight_decay=0.1)),
                                     ("AdamW", dict(lr=0.01, weight_decay=0.5)),
                                     ("RMSprop", dict(lr=0.01, momentum=0.5, weight_decay=0.1))])
def test_a_frozen_layer_is_not_touched_and_the_rest_matches_torch(name, kw):
    model, tmodel = models()
    named, tnamed = dict(model.named_parameters()), dict(tmodel.named_parameters())
    for n in MIDDLE:
        named[n].requires_grad = tnamed[n].requires_grad = False
    frozen = {n: named[n].data.copy() for n in MIDDLE}
    opt = getattr(optim, name)(model.parameters(), **kw)
    topt = getattr(torch.optim, name)(tmodel.parameters(), foreach=False, **kw)
    for _ in range(10):
        train_step(model, opt, tmodel, topt)
    for n in MIDDLE:
        assert np.array_equal(named[n].data, frozen[n]) and not named[n].grad.any()
    assert_same(model, tmodel)
    assert opt.state_dict()["state"][2]["step"] == 0 and opt.state_dict()["state"][0]["step"] == 10


def test_frozen_then_unfrozen_keeps_its_own_step_count_as_torch(monkeypatch):
    model, tmodel = models()
    named, tnamed = dict(model.named_parameters()), dict(tmodel.named_parameters())
    opt = optim.Adam(model.parameters(), lr=0.01)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01, foreach=False)
    calls = count_calls(monkeypatch, "adam_step")
    for k in range(9):
        for n in FIRST:
            named[n].requires_grad = tnamed[n].requires_grad = not 3 <= k < 6
        train_step(model, opt, tmodel, topt)
    assert_same(model, tmodel)
    assert len(calls) == 3 + 3 + 3 * 2  # frozen: the rest; unfrozen: two step counts, two calls
    assert [opt.state_dict()["state"][i]["step"] for i in range(6)] == [6, 6, 9, 9, 9, 9]


def test_a_parameter_twice_in_a_group_warns_and_gets_one_slot():
    a, b = cg.nn.Parameter(np.ones(3)), cg.nn.Parameter(np.zeros(2))
    with pytest.warns(UserWarning, match="duplicate"):
        opt = optim.SGD([a, b, a], lr=0.1)
    with pytest.warns(UserWarning, match="duplicate"):
        torch.optim.SGD([torch.zeros(1, requires_grad=True)] * 2)
    assert opt.param_groups[0]["params"] == [a, b] and opt.data.size == 5
    assert np.shares_memory(a.data, opt.data) and np.shares_memory(b.grad, opt.grad)
    a.grad[...] = 1.0
    opt.step()
    assert np.array_equal(a.data, np.full(3, 0.9))  # one update, not two


def test_a_parameter_in_two_groups_raises_as_torch():
    model, tmodel = models()
    with pytest.raises(ValueError, match="more than one parameter group"):
        torch.optim.SGD(groups(tmodel, [(FIRST, {}), (FIRST[:1], {})]))
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD(groups(model, [(FIRST, {}), (FIRST[:1], {})]))
    opt = optim.SGD(groups(model, [(FIRST, {})]))
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group(groups(model, [(FIRST[1:] + MIDDLE, {})])[0])
    assert len(opt.param_groups) == 1 and opt.data.size == 35


def test_bad_groups():
    model, _ = models()
    p = model.parameters()
    with pytest.raises(TypeError, match="iterable of Parameters"):
        optim.SGD(p[0])
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([])
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": set(p)}])
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([np.zeros(3)])
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([{"params": p[:2], "lr": -1.0}])
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([{"params": p[:2], "betas": (0.9, 1.5)}])
    with pytest.raises(TypeError, match="maximize"):
        optim.Adam(p, maximize="no")
    opt = optim.SGD(p, lr=0.1)
    opt.param_groups[0]["lr"] = -0.5  # caught at the step, before anything moves
    before = opt.data.copy()
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert np.array_equal(opt.data, before) and opt.step_count == 0


# -- flat buffers: never a stale optimizer ------------------------------------------------
def test_regrouped_then_flattened_again_the_optimizer_raises():
    model, _ = models()
    opt = optim.SGD(groups(model, [(LAST, {}), (FIRST + MIDDLE, {})]), lr=0.1)
    F.cross_entropy(model(X), Y).backward()
    opt.step()  # fine: the layers read the optimizer's buffer
    model.flat_buffers()  # back to model order: new buffers
    for use in (opt.step, opt.zero_grad, lambda: opt.grad, lambda: opt.data):
        with pytest.raises(RuntimeError, match="moved to another flat buffer"):
            use()


def test_a_second_optimizer_in_another_order_makes_the_first_raise():
    model, _ = models()
    first = optim.Adam(model.parameters())
    assert first.data is model.flat_buffers()[0]  # Sequential's buffer, shared
    same_order = optim.SGD(model.parameters(), lr=0.1)
    assert same_order.data is first.data
    second = optim.SGD(groups(model, [(MIDDLE, {}), (FIRST + LAST, {})]), lr=0.1)
    with pytest.raises(RuntimeError, match="moved to another flat buffer"):
        first.step()
    with pytest.raises(RuntimeError, match="moved to another flat buffer"):
        same_order.zero_grad()
    w = model[2].weight.data.copy()
    F.cross_entropy(model(X), Y).backward()
    second.step()  # the optimizer that moved them works, and the model sees its updates
    assert not np.array_equal(model[2].weight.data, w)
    assert np.shares_memory(model[2].weight.data, second.data)


def test_add_param_group_that_moves_shared_parameters_makes_the_other_raise():
    model, _ = models()
    whole = optim.SGD(model.parameters(), lr=0.1)
    part = optim.SGD(groups(model, [(MIDDLE, {})]), lr=0.1)  # a slice of the same buffer
    assert np.shares_memory(part.data, whole.data)
    part.add_param_group(groups(model, [(FIRST, {})])[0])  # MIDDLE + FIRST: not adjacent
    part.step()
    with pytest.raises(RuntimeError, match="moved"):
        whole.step()


def test_an_optimizer_over_the_trainable_subset_trains_the_model():
    model, tmodel = models()
    named, tnamed = dict(model.named_parameters()), dict(tmodel.named_parameters())
    for n in MIDDLE:
        named[n].requires_grad = tnamed[n].requires_grad = False
    opt = optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    topt = torch.optim.Adam([p for p in tmodel.parameters() if p.requires_grad], lr=0.01)
    for _ in range(5):
        train_step(model, opt, tmodel, topt)
    assert_same(model, tmodel)
    assert opt.data.size == model.num_parameters() - 5 * 4 - 4


# -- state_dict with groups -----------------------------------------------------------------
def test_state_dict_with_groups_resumes_bitwise_and_checks_the_groups():
    model, tmodel = models()
    spec = [(LAST, dict(lr=0.02, amsgrad=True)), (FIRST + MIDDLE, {})]
    opt = optim.Adam(groups(model, spec), lr=0.01)
    topt = torch.optim.Adam(groups(tmodel, spec), lr=0.01, foreach=False)
    for _ in range(3):
        train_step(model, opt, tmodel, topt)
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3, 4, 5]]
    assert [g["params"] for g in sd["param_groups"]] == \
        [g["params"] for g in topt.state_dict()["param_groups"]]
    assert sd["state"][0]["exp_avg"].shape == (3, 4) and sd["state"][0]["step"] == 3
    copy, _ = models()
    copy.load_state_dict(model.state_dict())
    resumed = optim.Adam(groups(copy, [(LAST, {}), (FIRST + MIDDLE, {})]), lr=0.5)
    resumed.load_state_dict(sd)
    assert resumed.param_groups[0]["lr"] == 0.02 and resumed.param_groups[0]["amsgrad"]
    for _ in range(3):
        train_step(model, opt, tmodel, topt)
        for m, o in ((copy, resumed),):
            loss = F.cross_entropy(m(X), Y)
            o.zero_grad()
            loss.backward()
            o.step()
    for k, v in model.state_dict().items():
        assert np.array_equal(v, copy.state_dict()[k]), k
    assert_same(model, tmodel)
    wrong = optim.Adam(groups(copy, [(LAST + FIRST + MIDDLE, {})]))
    before = wrong.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        wrong.load_state_dict(sd)
    with pytest.raises(ValueError, match="group 1"):
        optim.Adam(groups(copy, [(LAST, {}), (FIRST, {})])).load_state_dict(sd)
    with pytest.raises(ValueError, match="Adam"):
        optim.SGD(groups(copy, [(LAST, {}), (FIRST + MIDDLE, {})])).load_state_dict(sd)
    assert wrong.state_dict()["param_groups"] == before["param_groups"]


def test_the_old_single_buffer_state_dict_still_loads():
    model, _ = models()
    opt = optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        F.cross_entropy(model(X), Y).backward()
        opt.step()
    old = {"type": "Adam", "step": 2, "hyper": dict(lr=0.01, betas=[0.9, 0.999], eps=1e-8,
                                                    weight_decay=0.0, amsgrad=False),
           "state": {k: v.copy() for k, v in opt.state.items()}}
    other = optim.Adam(models()[0].parameters())
    other.load_state_dict(old)
    assert other.step_count == 2 and other.param_groups[0]["betas"] == (0.9, 0.999)
    assert all(np.array_equal(opt.state[k], other.state[k]) for k in opt.state)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(dict(old, state={"exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)}))


# -- distributed: rank 0's grouped state reaches the other ranks ------------------------------
class _Rank1Comm:
    """A communicator seen from rank 1 of 2: Bcast/bcast deliver rank 0's values."""

    def __init__(self, model0, opt0):
        self.arrays = [a.copy() for a in ([model0.flat_buffers()[0]])]
        self.state = opt0.state_dict()

    def Get_rank(self):
        return 1

    def Get_size(self):
        return 2

    def Allreduce(self, send, recv, op=None):
        pass

    def Bcast(self, buf, root=0):
        buf[...] = self.arrays.pop(0)

    def bcast(self, obj, root=0):
        return self.state

    def allgather(self, obj):  # rank 0 has the same sizes (Context.agree)
        return [obj, obj]


def test_broadcast_with_groups_loads_rank0_state_without_moving_parameters():
    if not distributed.available():
        pytest.skip("mpi4py is not installed")
    model0, _ = models(seed=0)
    opt0 = optim.SGD(groups(model0, [(FIRST + MIDDLE, dict(lr=0.3, momentum=0.9)), (LAST, {})]),
                     lr=0.1)
    F.cross_entropy(model0(X), Y).backward()
    opt0.step()
    model1, _ = models(seed=1)
    opt1 = optim.SGD(groups(model1, [(FIRST + MIDDLE, {}), (LAST, {})]), lr=0.1)
    data1 = opt1.data
    distributed.Context(_Rank1Comm(model0, opt0)).broadcast(model1, opt1)
    assert opt1.data is data1  # nothing rebound: the optimizer still steps the model
    assert np.array_equal(opt1.data, opt0.data)
    assert opt1.param_groups[0]["lr"] == 0.3 and np.array_equal(opt1.state["momentum_buffer"],
                                                                 opt0.state["momentum_buffer"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt1.step()

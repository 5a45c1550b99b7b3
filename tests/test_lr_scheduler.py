"""cygrad.optim.lr_scheduler against torch.optim.lr_scheduler: the learning rate of every
scheduler over 50 steps with two parameter groups of different base lr (within 1e-12
relative), state_dict round trips mid-run, ReduceLROnPlateau on scripted metrics,
OneCycleLR's strategies and momentum, and checkpoints through cg.save / cg.load."""
import json
import math
import warnings

import numpy as np
import pytest

import cygrad as cg
from cygrad import optim
from cygrad.optim import lr_scheduler

torch = pytest.importorskip("torch")
TL = torch.optim.lr_scheduler
BASE_LRS = (0.1, 0.02)
STEPS = 50


def optimizers(kind="SGD", **kw):
    """(ours, torch's): two groups of one parameter each, base lr 0.1 and 0.02."""
    ours = [cg.nn.Parameter(np.zeros(3)), cg.nn.Parameter(np.zeros(2))]
    theirs = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    return tuple(getattr(lib, kind)([{"params": [p], "lr": lr} for p, lr in zip(ps, BASE_LRS)],
                                    **kw) for lib, ps in ((optim, ours), (torch.optim, theirs)))
    return ours, theirs


def one_cycle(lib, opt):
    return lib.OneCycleLR(opt, max_lr=[0.5, 0.05], total_steps=STEPS + 1)


def sequential(lib, opt):
    return lib.SequentialLR(opt, [lib.LinearLR(opt, start_factor=0.1, total_iters=5),
                                  lib.ExponentialLR(opt, gamma=0.9),
                                  lib.CosineAnnealingLR(opt, T_max=10, eta_min=1e-3)],
                            milestones=[5, 20])


SCHEDULERS = {
    "StepLR": lambda lib, opt: lib.StepLR(opt, step_size=7, gamma=0.5),
    "StepLR-default": lambda lib, opt: lib.StepLR(opt, step_size=3),
    "MultiStepLR": lambda lib, opt: lib.MultiStepLR(opt, milestones=[5, 12, 12, 30], gamma=0.3),
    "ExponentialLR": lambda lib, opt: lib.ExponentialLR(opt, gamma=0.93),
    "CosineAnnealingLR": lambda lib, opt: lib.CosineAnnealingLR(opt, T_max=13, eta_min=1e-4),
    "CosineAnnealingLR-default": lambda lib, opt: lib.CosineAnnealingLR(opt, T_max=50),
    "LinearLR": lambda lib, opt: lib.LinearLR(opt, start_factor=0.2, end_factor=0.9,
                                              total_iters=20),
    "LinearLR-default": lambda lib, opt: lib.LinearLR(opt),
    "LambdaLR": lambda lib, opt: lib.LambdaLR(opt, [lambda e: 0.97 ** e, lambda e: 1 / (1 + e)]),
    "LambdaLR-one": lambda lib, opt: lib.LambdaLR(opt, lambda e: math.cos(e / 10) ** 2),
    "OneCycleLR": one_cycle,
    "SequentialLR": sequential,
}


def lrs(opt):
    return [g["lr"] for g in opt.param_groups]


def run(sched, opt, steps):
    """Step optimizer then scheduler `steps` times; the lr the optimizer saw at each step."""
    seen = []
    for _ in range(steps):
        seen.append(lrs(opt))
        opt.step()
        sched.step()
    return seen


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_matches_torch_over_50_steps_with_a_state_dict_round_trip(name):
    make = SCHEDULERS[name]
    opt, topt = optimizers(momentum=0.9)
    sched, tsched = make(lr_scheduler, opt), make(TL, topt)
    close(sched.base_lrs, getattr(tsched, "base_lrs", BASE_LRS))  # torch's SequentialLR has none
    close(sched.get_last_lr(), tsched.get_last_lr())
    theirs = run(tsched, topt, STEPS)
    ours = run(sched, opt, STEPS // 2)
    # a fresh optimizer and scheduler, restored from JSON-serialised state (a checkpoint's)
    saved = json.loads(json.dumps({"opt": _plain(opt.state_dict()), "sched": sched.state_dict()}))
    fresh, _ = optimizers(momentum=0.5)
    fresh_sched = make(lr_scheduler, fresh)
    fresh.load_state_dict(saved["opt"])
    fresh_sched.load_state_dict(saved["sched"])
    assert fresh_sched.last_epoch == sched.last_epoch
    ours += run(fresh_sched, fresh, STEPS - STEPS // 2)
    close(ours, theirs)
    close(fresh_sched.get_last_lr(), tsched.get_last_lr())
    assert fresh_sched.get_last_lr() == lrs(fresh)


def _plain(state_dict):
    """An optimizer state_dict as JSON holds it (arrays as lists)."""
    return json.loads(json.dumps(state_dict, default=lambda a: a.tolist()))


def test_sequential_milestones_switch_schedulers_as_torch():
    def make(lib, opt):
        return lib.SequentialLR(opt, [lib.ExponentialLR(opt, gamma=0.5), lib.StepLR(opt, 2, 0.1),
                                      lib.MultiStepLR(opt, [1, 2], 0.5),
                                      lib.LambdaLR(opt, lambda e: e + 1)], milestones=[3, 6, 6])
    opt, topt = optimizers()
    sched, tsched = make(lr_scheduler, opt), make(TL, topt)
    close(run(sched, opt, 12), run(tsched, topt, 12))
    state = sched.state_dict()
    assert state["_milestones"] == [3, 6, 6] and len(state["_schedulers"]) == 4


PLATEAU_METRICS = [1.0, 0.9, 0.95, 0.96, 0.97, 0.89, 0.9, 0.9, 0.9, 0.9, 0.88, 0.9, 0.9, 0.9, 0.9,
                   0.9, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.7, 0.9, 0.9] \
    + [0.9] * 12


@pytest.mark.parametrize("kw", [
    dict(),
    dict(patience=2),
    dict(mode="min", threshold=0.05, threshold_mode="rel", patience=1, factor=0.5),
    dict(mode="min", threshold=0.02, threshold_mode="abs", patience=1, cooldown=2),
    dict(mode="max", patience=2, factor=0.3, min_lr=[0.01, 1e-4]),
    dict(mode="max", threshold=0.05, threshold_mode="abs", patience=0, min_lr=0.005),
    dict(patience=0, factor=0.9, eps=1e-3, cooldown=1),
])
def test_reduce_on_plateau_matches_torch(kw):
    opt, topt = optimizers()
    sched, tsched = lr_scheduler.ReduceLROnPlateau(opt, **kw), TL.ReduceLROnPlateau(topt, **kw)
    metrics = PLATEAU_METRICS if kw.get("mode", "min") == "min" else [-m for m in PLATEAU_METRICS]
    for k, m in enumerate(metrics):
        if k == 15:  # through a checkpoint, mid-run
            fresh, _ = optimizers()
            fresh.load_state_dict(opt.state_dict())
            state = json.loads(json.dumps(sched.state_dict()))
            sched = lr_scheduler.ReduceLROnPlateau(fresh, **kw)
            sched.load_state_dict(state)
            opt = fresh
        sched.step(np.float64(m))
        tsched.step(m)
        close(lrs(opt), lrs(topt))
        close(sched.get_last_lr(), tsched.get_last_lr())
        assert (sched.num_bad_epochs, sched.cooldown_counter, sched.best) == \
               (tsched.num_bad_epochs, tsched.cooldown_counter, tsched.best)
    assert lrs(opt) != list(BASE_LRS)  # the script does reduce it


def test_reduce_on_plateau_state_survives_json_at_the_start():
    opt, _ = optimizers()
    sched = lr_scheduler.ReduceLROnPlateau(opt, mode="max")
    state = json.loads(json.dumps(sched.state_dict()))
    assert state["best"] == -math.inf
    other = lr_scheduler.ReduceLROnPlateau(optimizers()[0])
    other.load_state_dict(state)
    assert other.mode == "max" and other._is_better(1.0, other.best)


@pytest.mark.parametrize("kind,kw", [("SGD", dict(momentum=0.9)), ("Adam", dict()),
                                     ("RMSprop", dict())])
@pytest.mark.parametrize("anneal_strategy", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_matches_torch_with_momentum(kind, kw, anneal_strategy, three_phase):
    args = dict(max_lr=[0.4, 0.04], epochs=4, steps_per_epoch=10, pct_start=0.25,
                anneal_strategy=anneal_strategy, three_phase=three_phase, div_factor=10.0,
                final_div_factor=100.0, base_momentum=[0.8, 0.7], max_momentum=0.9)
    opt, topt = optimizers(kind, **kw)
    sched, tsched = lr_scheduler.OneCycleLR(opt, **args), TL.OneCycleLR(topt, **args)
    key = "betas" if kind == "Adam" else "momentum"
    for _ in range(40):
        close(lrs(opt), lrs(topt))
        for g, tg in zip(opt.param_groups, topt.param_groups):
            assert g[key] == pytest.approx(tg[key], rel=1e-12)
            assert g["max_lr"] == tg["max_lr"] and g["min_lr"] == tg["min_lr"]
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    for s in (sched, tsched):
        with pytest.raises(ValueError, match="Tried to step 41 times"):
            s.step()


def test_one_cycle_without_momentum_cycling_and_errors():
    opt, topt = optimizers("Adagrad")
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, cycle_momentum=False)
    tsched = TL.OneCycleLR(topt, max_lr=1.0, total_steps=10, cycle_momentum=False)
    close(run(sched, opt, 9), run(tsched, topt, 9))
    with pytest.raises(ValueError, match="momentum or beta1"):
        lr_scheduler.OneCycleLR(optimizers("Adagrad")[0], max_lr=1.0, total_steps=10)
    with pytest.raises(ValueError, match="total_steps OR"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="pct_start"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=1, cycle_momentum=False)
    with pytest.raises(ValueError, match="anneal_strategy"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="exp",
                                cycle_momentum=False)
    with pytest.raises(ValueError, match="max_lr must have the same length"):
        lr_scheduler.OneCycleLR(opt, max_lr=[1.0, 2.0, 3.0], total_steps=10, cycle_momentum=False)


def test_intervals():
    opt, _ = optimizers(momentum=0.9)
    assert lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5).interval == "step"
    for name, make in SCHEDULERS.items():
        if name != "OneCycleLR":
            assert make(lr_scheduler, optimizers(momentum=0.9)[0]).interval == "epoch"
    assert lr_scheduler.ReduceLROnPlateau(opt).interval == "epoch"
    mixed = lr_scheduler.SequentialLR(opt, [lr_scheduler.StepLR(opt, 2),
                                            lr_scheduler.OneCycleLR(opt, 0.1, total_steps=9)], [3])
    assert mixed.interval is None and "interval" not in mixed.state_dict()


def test_step_before_optimizer_step_warns_as_torch():
    opt, topt = optimizers()
    for o, lib in ((opt, lr_scheduler), (topt, TL)):
        sched = lib.StepLR(o, 2)
        with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
            sched.step()
    opt, _ = optimizers()
    sched = lr_scheduler.StepLR(opt, 2)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
                                  "LinearLR"])
def test_step_with_an_epoch_uses_the_closed_form_as_torch(name):
    make = SCHEDULERS[name]
    opt, topt = optimizers()
    sched, tsched = make(lr_scheduler, opt), make(TL, topt)
    for epoch in (3, 17, 4, 30):
        opt.step()
        topt.step()
        with pytest.warns(UserWarning, match="epoch parameter"):
            sched.step(epoch)
        with pytest.warns(UserWarning):
            tsched.step(epoch)
        close(lrs(opt), lrs(topt))


class Warmup:
    """A callable object: LambdaLR saves its attributes (torch does too)."""

    def __init__(self, length):
        self.length = length

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.length)


def test_lambda_lr_saves_callable_objects_but_not_functions():
    opt, _ = optimizers()
    sched = lr_scheduler.LambdaLR(opt, [Warmup(4), lambda e: 0.5])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"length": 4}, None] and "lr_lambdas" in sched.__dict__
    other = lr_scheduler.LambdaLR(optimizers()[0], [Warmup(9), lambda e: 0.5])
    other.load_state_dict(json.loads(json.dumps(state)))
    assert other.lr_lambdas[0].length == 4


def test_resuming_with_last_epoch_needs_initial_lr():
    opt, topt = optimizers()
    for o, lib in ((opt, lr_scheduler), (topt, TL)):
        with pytest.raises(KeyError, match="initial_lr"):
            lib.StepLR(o, 3, last_epoch=5)
    lr_scheduler.StepLR(opt, 3)
    TL.StepLR(topt, 3)
    sched, tsched = lr_scheduler.StepLR(opt, 3, last_epoch=5), TL.StepLR(topt, 3, last_epoch=5)
    assert sched.last_epoch == tsched.last_epoch == 6
    close(run(sched, opt, 7), run(tsched, topt, 7))


def test_bad_arguments_as_torch():
    opt, _ = optimizers()
    cases = [
        (lambda lib: lib.LambdaLR(opt, [lambda e: 1.0]), "Expected 2 lr_lambdas"),
        (lambda lib: lib.LinearLR(opt, start_factor=0), "Starting multiplicative factor"),
        (lambda lib: lib.LinearLR(opt, end_factor=2), "Ending multiplicative factor"),
        (lambda lib: lib.ReduceLROnPlateau(opt, factor=1.0), "Factor should be < 1.0"),
        (lambda lib: lib.ReduceLROnPlateau(opt, mode="up"), "mode up is unknown"),
        (lambda lib: lib.ReduceLROnPlateau(opt, threshold_mode="x"), "threshold mode x is unknown"),
        (lambda lib: lib.ReduceLROnPlateau(opt, min_lr=[0.1]), "expected 2 min_lrs"),
        (lambda lib: lib.SequentialLR(opt, [lib.StepLR(opt, 2)], [3]), "number of milestone"),
        (lambda lib: lib.SequentialLR(opt, [], []), "at least one scheduler"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make(lr_scheduler)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        lr_scheduler.SequentialLR(opt, [lr_scheduler.StepLR(opt, 2),
                                        lr_scheduler.ReduceLROnPlateau(opt)], [3])
    with pytest.raises(ValueError, match="same optimizer"):
        lr_scheduler.SequentialLR(opt, [lr_scheduler.StepLR(optimizers()[0], 2)], [])
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR(object(), 2)
    with pytest.raises(ValueError, match="unknown keys"):
        other = lr_scheduler.CosineAnnealingLR(opt, 5).state_dict()
        lr_scheduler.StepLR(opt, 2).load_state_dict(other)


def test_a_group_added_after_the_scheduler_is_an_error_not_a_silent_skip():
    opt, _ = optimizers()
    sched = lr_scheduler.LambdaLR(opt, lambda e: 0.5 ** e)
    opt.add_param_group({"params": [cg.nn.Parameter(np.zeros(1))], "lr": 1.0})
    opt.step()
    with pytest.raises(ValueError, match="3 parameter groups"):
        sched.step()


@pytest.mark.parametrize("name", ["OneCycleLR", "SequentialLR", "CosineAnnealingLR", "plateau"])
def test_checkpoint_round_trip_through_save_and_load(tmp_path, name):
    def setup(seed):
        model = cg.models.mlp(sizes=(4, 3, 2), dtype=np.float64, seed=seed)
        p = model.parameters()
        opt = optim.SGD([{"params": p[:2], "lr": 0.1}, {"params": p[2:], "lr": 0.02}], momentum=0.9)
        sched = lr_scheduler.ReduceLROnPlateau(opt, patience=1) if name == "plateau" else \
            SCHEDULERS[name](lr_scheduler, opt)
        return model, opt, sched
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(23) for _ in range(20)]
    metrics = [1.0, 1.0, 1.0, 0.5, 0.6, 0.7] * 4

    def train(model, opt, sched, ks):
        for k in ks:
            opt.grad[...] = grads[k]
            opt.step()
            sched.step(metrics[k]) if name == "plateau" else sched.step()
    model, opt, sched = setup(0)
    train(model, opt, sched, range(10))
    cg.save(tmp_path / "ck.npz", model, opt, scheduler=sched, epoch=10)
    other, other_opt, other_sched = setup(1)
    assert cg.load(tmp_path / "ck.npz", other, other_opt, scheduler=other_sched) == {"epoch": 10}
    train(model, opt, sched, range(10, 20))
    train(other, other_opt, other_sched, range(10, 20))
    assert other_sched.get_last_lr() == sched.get_last_lr() == lrs(other_opt)
    assert np.array_equal(model.flat_buffers()[0], other.flat_buffers()[0])

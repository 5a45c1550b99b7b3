"""First-order optimizers: SGD (momentum, Nesterov), Adagrad, RMSprop, Adam, AdamW.

Names, arguments, defaults and update formulas are torch.optim's (the single-tensor
algorithms, implemented by the backend's *_step kernels), parameter groups included.
Each group is a slice of the optimizer's flat buffers, so a step is one kernel call per
group (see cygrad.optim.optimizer).
"""
from cygrad.optim.optimizer import Optimizer, _betas


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, weight decay (L2), Nesterov, maximize."""

    _all_state_names = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        self._started = []  # per parameter: its momentum buffer exists (torch: not None)
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _required(self, group):
        return ()  # a buffer is created on a parameter's first step with momentum

    def _layout(self):
        super()._layout()
        self._started += [False] * (len(self._params) - len(self._started))

    def _next_steps(self, group, first, last):
        # the kernel sets the buffer to the gradient on step 1 and only then: make that
        # a parameter's first update with momentum, whenever it comes (torch creates the
        # buffer then), and never a started buffer's (torch's state has no step count)
        steps = super()._next_steps(group, first, last)
        if group["momentum"] == 0:
            return steps
        return [max(s, 2) if on else 1 for s, on in zip(steps, self._started[first:last])]

    def _advance(self, group, first, last):
        super()._advance(group, first, last)
        if group["momentum"] != 0:
            self._started[first:last] = [True] * (last - first)

    def _present(self, group, i):
        return ["momentum_buffer"] if self._started[i] else []

    def _restore_param(self, group, i, step, values):
        super()._restore_param(group, i, step, values)
        self._started[i] = "momentum_buffer" in values

    def _update(self, F, group, sl, step):
        data, grad, buf = self._slices(sl, "momentum_buffer")
        F.sgd_step(data, grad, buf if group["momentum"] != 0 else None, step=step,
                   lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
                   weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                   maximize=group["maximize"])


class Adagrad(Optimizer):
    """torch.optim.Adagrad. Each group's sum starts at the group's
    initial_accumulator_value (torch starts every parameter at the constructor's value
    and ignores a group's)."""

    _all_state_names = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _state_names(self, group):
        return ("sum",)

    def _initial(self, name, group):
        return group["initial_accumulator_value"]

    def _update(self, F, group, sl, step):
        data, grad, ssum = self._slices(sl, "sum")
        F.adagrad_step(data, grad, ssum, lr=group["lr"], lr_decay=group["lr_decay"],
                       weight_decay=group["weight_decay"], eps=group["eps"],
                       maximize=group["maximize"], step=step)


class RMSprop(Optimizer):
    """torch.optim.RMSprop (momentum and centered variants)."""

    _all_state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _state_names(self, group):
        names = ["square_avg"]
        if group["momentum"] > 0:
            names.append("momentum_buffer")
        if group["centered"]:
            names.append("grad_avg")
        return tuple(names)

    def _update(self, F, group, sl, step):
        data, grad, sq, buf, gavg = self._slices(sl, "square_avg", "momentum_buffer", "grad_avg")
        F.rmsprop_step(data, grad, sq, lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                       weight_decay=group["weight_decay"], momentum=group["momentum"],
                       momentum_buf=buf, centered=group["centered"], grad_avg=gavg,
                       maximize=group["maximize"])


class Adam(Optimizer):
    """torch.optim.Adam with bias correction; amsgrad keeps the running max of exp_avg_sq;
    decoupled_weight_decay=True is AdamW's update (as torch 2.x)."""

    _all_state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=_betas(betas, type(self).__name__), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _update(self, F, group, sl, step):
        data, grad, m, v, vmax = self._slices(sl, "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        kernel = F.adamw_step if group["decoupled_weight_decay"] else F.adam_step
        kernel(data, grad, m, v, step=step, lr=group["lr"], beta1=group["betas"][0],
               beta2=group["betas"][1], eps=group["eps"], weight_decay=group["weight_decay"],
               amsgrad=group["amsgrad"], max_exp_avg_sq=vmax if group["amsgrad"] else None,
               maximize=group["maximize"])


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 0.01)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)

    def _check_group(self, group):
        group["decoupled_weight_decay"] = True  # always, as torch's AdamW
        super()._check_group(group)


__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]

"""Optimizers over one flat buffer: SGD (momentum, Nesterov), Adagrad, RMSprop, Adam, AdamW.

Names, arguments and defaults are torch.optim's, and so are the update formulas (the
single-tensor algorithms, implemented by the backend's *_step kernels). The model's
parameters are views into one contiguous buffer and their gradients into another, and
every state buffer (momentum, moments, ...) is flat as well, so `step()` is a single
kernel call for the whole model.
"""
import numpy as np

from cygrad import backend
from cygrad.autograd import bump_versions
from cygrad.nn.module import Module
from cygrad.nn.parameter import flatten


class Optimizer:
    """Base: holds the flat (data, grad) buffers, the hyperparameters and flat state buffers."""

    defaults = {}

    def __init__(self, params, **hyper):
        if isinstance(params, Module):
            params = params.parameters()
        self.params = list(params)
        self.data, self.grad = flatten(self.params)
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}")
        self.hyper = {**self.defaults, **hyper}
        self._validate()
        self.step_count = 0
        self.state = {name: np.full_like(self.data, self._initial(name))
                      for name in self._state_names()}

    # -- what each optimizer defines -----------------------------------------------
    def _state_names(self):
        return ()

    def _initial(self, name):
        return 0.0

    def _update(self, F, state):
        raise NotImplementedError

    def _validate(self):
        for key in ("lr", "eps", "weight_decay", "momentum", "lr_decay", "alpha"):
            if key in self.hyper and not self.hyper[key] >= 0.0:
                raise ValueError(f"invalid {key} for {type(self).__name__}: {self.hyper[key]} (must be >= 0)")

    # -- the public API --------------------------------------------------------------
    @property
    def lr(self):
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value):
        self.hyper["lr"] = float(value)

    def zero_grad(self, set_to_none=True):
        """Zero every gradient (one fill of the flat gradient buffer; set_to_none, torch's
        default, zeroes too: the gradients are views of that buffer)."""
        self.grad.fill(0)

    def _bump_versions(self):
        """The parameters changed in place: a graph recorded before must not backward."""
        bump_versions(self.params)

    def step(self, closure=None):
        """One update of every parameter: a single kernel call on the flat buffers.

        closure (optional, as torch): a callable that recomputes the loss and fills
        the gradients; it is called first and its loss returned.
        """
        loss = None if closure is None else closure()
        self.step_count += 1
        self._update(backend.current(), self.state)
        self._bump_versions()
        return loss

    def state_dict(self):
        """{'type', 'step', 'hyper', 'state': {name: flat array copy}}."""
        return {"type": type(self).__name__, "step": self.step_count, "hyper": dict(self.hyper),
                "state": {k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, state_dict):
        """Restore step count, hyperparameters and state buffers (sizes must match)."""
        if state_dict.get("type", type(self).__name__) != type(self).__name__:
            raise ValueError(f"state dict of a {state_dict['type']} loaded into a {type(self).__name__}")
        state = state_dict["state"]
        if set(state) != set(self.state):
            raise ValueError(f"{type(self).__name__} state buffers are {sorted(self.state)}, "
                             f"the state dict has {sorted(state)}")
        for k, v in state.items():
            v = np.asarray(v)
            if v.shape != self.state[k].shape:
                raise ValueError(f"optimizer state {k!r} has shape {v.shape}, expected "
                                 f"{self.state[k].shape}")
        hyper = {**self.hyper, **state_dict.get("hyper", {})}
        for k, v in state.items():
            self.state[k][...] = v
        self.hyper = hyper
        self.step_count = int(state_dict["step"])

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, weight decay (L2), Nesterov."""

    defaults = dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _validate(self):
        super()._validate()
        if self.hyper["nesterov"] and (self.hyper["momentum"] <= 0 or self.hyper["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names(self):
        return ("momentum_buffer",) if self.hyper["momentum"] != 0 else ()

    def _update(self, F, state):
        F.sgd_step(self.data, self.grad, state.get("momentum_buffer"), step=self.step_count,
                   **self.hyper)


class Adagrad(Optimizer):
    """torch.optim.Adagrad."""

    defaults = dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                    eps=1e-10)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps)

    def _state_names(self):
        return ("sum",)

    def _initial(self, name):
        return self.hyper["initial_accumulator_value"]

    def _update(self, F, state):
        h = self.hyper
        F.adagrad_step(self.data, self.grad, state["sum"], lr=h["lr"], lr_decay=h["lr_decay"],
                       weight_decay=h["weight_decay"], eps=h["eps"], step=self.step_count)


class RMSprop(Optimizer):
    """torch.optim.RMSprop (momentum and centered variants)."""

    defaults = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)

    def _state_names(self):
        names = ["square_avg"]
        if self.hyper["momentum"] > 0:
            names.append("momentum_buffer")
        if self.hyper["centered"]:
            names.append("grad_avg")
        return tuple(names)

    def _update(self, F, state):
        F.rmsprop_step(self.data, self.grad, state["square_avg"],
                       momentum_buf=state.get("momentum_buffer"), grad_avg=state.get("grad_avg"),
                       **self.hyper)


class Adam(Optimizer):
    """torch.optim.Adam with bias correction; amsgrad keeps the running max of exp_avg_sq."""

    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)
    _kernel = "adam_step"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=tuple(float(b) for b in betas), eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad)

    def _validate(self):
        super()._validate()
        for i, b in enumerate(self.hyper["betas"]):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"invalid beta parameter at index {i}: {b} (must be in [0, 1))")

    def _state_names(self):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.hyper["amsgrad"] else ())

    def _update(self, F, state):
        h = self.hyper
        getattr(F, self._kernel)(
            self.data, self.grad, state["exp_avg"], state["exp_avg_sq"], step=self.step_count,
            lr=h["lr"], beta1=h["betas"][0], beta2=h["betas"][1], eps=h["eps"],
            weight_decay=h["weight_decay"], amsgrad=h["amsgrad"],
            max_exp_avg_sq=state.get("max_exp_avg_sq"))


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 0.01)."""

    defaults = dict(Adam.defaults, weight_decay=1e-2)
    _kernel = "adamw_step"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


from cygrad.optim_second_order import LBFGS, ConjugateGradient, Newton  # noqa: E402

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "LBFGS",
           "ConjugateGradient", "Newton"]

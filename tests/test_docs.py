"""help() on every public class and function shows a real docstring (issue 14)."""
import importlib
import inspect

import pytest

MODULES = ["cygrad", "cygrad.nn", "cygrad.nn.functional", "cygrad.nn.init", "cygrad.nn.utils",
           "cygrad.optim", "cygrad.optim.lr_scheduler", "cygrad.data", "cygrad.train",
           "cygrad.callbacks", "cygrad.io", "cygrad.models", "cygrad.kernels", "cygrad.reference",
           "cygrad.autograd", "cygrad.tensor", "cygrad.testing"]


def _public(module):
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if not inspect.ismodule(obj) and (callable(obj) or inspect.isclass(obj)):
            yield name, obj


@pytest.mark.parametrize("modname", MODULES)
def test_every_public_function_class_and_method_has_a_docstring(modname):
    module = importlib.import_module(modname)
    assert (module.__doc__ or "").strip(), f"{modname} has no module docstring"
    missing = []
    for name, obj in _public(module):
        if not (inspect.getdoc(obj) or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_") or not (callable(value) or isinstance(value, property)):
                    continue
                if not (inspect.getdoc(getattr(obj, attr)) or "").strip():
                    missing.append(f"{name}.{attr}")
    assert not missing, f"{modname}: no docstring on {missing}"

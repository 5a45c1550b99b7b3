"""Module API beyond forward: buffers, apply, module walks, freezing, dtype conversion,
summary from a traced forward."""
import numpy as np
import pytest

import cygrad as cg
from cygrad import nn

F64 = np.float64


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
        self.head = nn.Linear(6, 2)
        self.register_buffer("scale", np.full(2, 3.0, np.float32))
        self.register_buffer("cache", np.zeros(2, np.float32), persistent=False)

    def forward(self, x):
        return self.head(self.body(x)) * self.scale


def test_buffers_are_state_but_not_parameters():
    net = Net()
    assert [n for n, _ in net.named_buffers()] == ["scale", "cache"]
    assert list(net.state_dict()) == ["scale", "body.0.weight", "body.0.bias", "head.weight",
                                      "head.bias"]
    assert all(not isinstance(b, nn.Parameter) for b in net.buffers())
    assert net.num_parameters() == 4 * 6 + 6 + 6 * 2 + 2
    net.scale = np.ones(2, np.float32)   # assigning to a buffer name replaces the buffer
    assert isinstance(net.scale, cg.Tensor) and net.state_dict()["scale"].tolist() == [1, 1]
    sd = net.state_dict()
    sd["scale"] = np.array([5.0, 6.0], np.float32)
    other = Net()
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.scale.data, [5.0, 6.0])
    with pytest.raises(KeyError):
        net.register_buffer("a.b", np.zeros(1))
    with pytest.raises(TypeError, match="Parameter"):
        net.register_buffer("p", nn.Parameter(np.zeros(1)))


def test_apply_walks_children_first_and_module_listings():
    net = Net()
    order = []
    net.apply(lambda m: order.append(type(m).__name__))
    assert order == ["Linear", "ReLU", "Sequential", "Linear", "Net"]
    assert [type(m).__name__ for m in net.modules()] == ["Net", "Sequential", "Linear", "ReLU", "Linear"]
    assert [n for n, _ in net.named_children()] == ["body", "head"]

    def init(m):
        if isinstance(m, nn.Linear):
            m.weight.data = np.zeros(m.weight.shape, np.float32)

    net.apply(init)
    assert not net.head.weight.data.any()
    net.add_module("extra", nn.Tanh())
    assert net.extra in net.children()
    with pytest.raises(TypeError, match="not a Module"):
        net.add_module("bad", 3)


def test_requires_grad_false_freezes_parameters():
    net = Net()
    net.body.requires_grad_(False)
    x = np.ones((3, 4), np.float32)
    net(x).sum().backward()
    assert not net.body[0].weight.grad.any() and net.head.weight.grad.any()
    net.requires_grad_()
    assert all(p.requires_grad for p in net.parameters())


def test_to_double_and_float_convert_parameters_buffers_and_flat_buffers():
    model = cg.models.cnn(seed=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28))
    want = model(x.astype(np.float32)).data
    model.double()
    data, grad = model.flat_buffers()
    assert data.dtype == F64 and all(p.data.base is data for p in model.parameters())
    assert all(p.grad.base is grad for p in model.parameters())
    out = model(x)
    assert out.dtype == F64
    np.testing.assert_allclose(out.data, want, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert grad.any()
    model.to("float32")
    assert model(x.astype(np.float32)).dtype == np.float32
    torch = pytest.importorskip("torch")
    model.to(torch.float64)
    assert model[0].weight.dtype == F64
    with pytest.raises(ValueError, match="CPU only"):
        model.to("cuda")


def test_summary_follows_the_forward_of_any_module(capsys):
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(4, 2)
            self.c = nn.Linear(4, 5)

        def forward(self, x):
            h = cg.nn.functional.relu(self.a(x))
            return self.c(h), self.b(h)   # c runs before b, whatever the registration order

    text = TwoHeads().summary((3,))
    lines = [line.split()[0] for line in text.splitlines() if line and line[0] in "abc"]
    assert lines == ["a", "c", "b"]
    assert "(None, 5)" in text and "Total params: 51" in text


@pytest.mark.parametrize("make", [nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, lambda: nn.Dropout(0.5)])
def test_a_0d_input_keeps_its_shape_through_modules(make):
    x = cg.tensor(np.array(-7.2), requires_grad=True)
    y = make()(x)
    assert y.shape == ()
    y.backward(np.array(1.0))
    assert x.grad.shape == ()


@pytest.mark.parametrize("loss", [nn.MSELoss(), nn.L1Loss(), nn.BCEWithLogitsLoss()])
def test_a_0d_input_keeps_its_shape_through_losses(loss):
    x = cg.tensor(np.array(0.3), requires_grad=True)
    out = loss(x, np.array(1.0))
    assert out.shape == ()
    out.backward()
    assert x.grad.shape == () and x.grad != 0


def test_replacing_or_deleting_a_child_keeps_the_order():
    net = Net()
    net.body = nn.Sequential(nn.Linear(4, 6))   # replaced: still first, as torch
    assert [n for n, _ in net.named_children()] == ["body", "head"]
    assert list(net.state_dict())[1] == "body.0.weight"
    del net.head
    assert [n for n, _ in net.named_children()] == ["body"] and not hasattr(net, "head")
    assert "head.weight" not in net.state_dict()


def test_converting_a_model_an_optimizer_holds_is_refused_at_the_next_step():
    model = cg.models.mlp(sizes=(4, 3, 2), seed=0)
    opt = cg.optim.SGD(model.parameters(), lr=0.1)
    model.double()
    with pytest.raises(RuntimeError, match="flat buffer"):
        opt.step()

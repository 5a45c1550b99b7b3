"""Sequential: modules applied in order (torch.nn.Sequential)."""
from cygrad.nn.activations import MaxPool2d, ReLU
from cygrad.nn.module import Module


class Sequential(Module):
    """Modules applied in order; children named "0", "1", ... as torch.nn.Sequential.

    On construction every parameter is moved into one flat data buffer and every
    gradient into one flat grad buffer. A module may appear more than once (its
    parameters are listed once, and their gradient is the sum over its uses).
    """

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential argument {i} is a {type(layer).__name__}, not a Module")
            setattr(self, str(i), layer)
        if self.parameters():
            self.flat_buffers()

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def _plan(self):
        """Layers in execution order, with each ReLU followed by a MaxPool2d run after it.

        max_pool(relu(x)) == relu(max_pool(x)) exactly (relu is monotone; a window
        whose max is <= 0 gives 0 and a zero gradient either way), and the ReLU then
        touches a quarter of the elements. A forward-time choice: the graph records
        the ops in the order they ran.
        """
        layers = list(self._modules.values())
        key = tuple(map(id, layers))
        if getattr(self, "_plan_key", None) != key:
            order = list(range(len(layers)))
            i = 0
            while i + 1 < len(layers):
                if type(layers[i]) is ReLU and type(layers[i + 1]) is MaxPool2d:
                    order[i], order[i + 1] = i + 1, i
                    i += 2
                else:
                    i += 1
            object.__setattr__(self, "_plan_cache", [layers[i] for i in order])
            object.__setattr__(self, "_plan_key", key)
        return self._plan_cache

    def forward(self, x):
        """x through every module in order (ReLU then MaxPool2d run as MaxPool2d then ReLU)."""
        for layer in self._plan():
            x = layer(x)
        return x

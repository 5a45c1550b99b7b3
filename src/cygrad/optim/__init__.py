"""cygrad.optim: torch.optim's optimizers and learning-rate schedulers over flat buffers.

- optimizer.py     the Optimizer base: parameter groups, freezing, state_dict
- first_order.py   SGD, Adagrad, RMSprop, Adam, AdamW (one kernel call per group)
- second_order.py  LBFGS, ConjugateGradient, Newton (closure-driven, full batch)
- linesearch.py    strong Wolfe and Armijo line searches
- lr_scheduler.py  StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR,
                   LambdaLR, OneCycleLR, ReduceLROnPlateau, SequentialLR
"""
from cygrad.optim import lr_scheduler
from cygrad.optim.first_order import SGD, Adagrad, Adam, AdamW, RMSprop
from cygrad.optim.optimizer import Optimizer
from cygrad.optim.second_order import LBFGS, ConjugateGradient, Newton

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "LBFGS",
           "ConjugateGradient", "Newton", "lr_scheduler"]

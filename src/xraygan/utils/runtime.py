"""Device choice and seeding. All randomness in xraygan flows from seeds passed in explicitly."""
from __future__ import annotations

import random

from xraygan.errors import XrayganError


def resolve_device(name: str = "auto"):
    """Map ``auto|cpu|cuda|cuda:N`` to a ``torch.device``; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise XrayganError(f"--device {name}: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise XrayganError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global generators (for code we do not control)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_module_callable(module_name: str, fn) -> None:
    """Let module ``module_name`` be called as ``fn``.

    ``xraygan.generate`` and ``xraygan.demo`` are both a module and the public function of the same
    name: once the module is imported, Python binds the package attribute to the module, so the
    module forwards calls to the function.
    """
    import sys
    import types

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return fn(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule

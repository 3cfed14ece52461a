"""Mixed precision on machines without CUDA.

mmengine's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU/MUSA. On CPU, bf16
autocast needs no loss scaling (bf16 has fp32's exponent range), so
``tools/train.py --amp`` uses this wrapper there.
"""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from rsvheat_mm.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` running forward passes under CPU autocast.

    Args:
        dtype (str): ``'bfloat16'`` (default) or ``'float16'``.
        **kwargs: Passed to :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs):
        super().__init__(**kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError(f"CPUAmpOptimWrapper: dtype must be 'bfloat16' or "
                             f"'float16', got {dtype!r}")
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield

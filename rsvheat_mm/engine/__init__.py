from .distributed import CPUDistributedDataParallel, init_cpu_distributed
from .optim_wrappers import CPUAmpOptimWrapper
from .optimizers import *  # noqa: F401,F403
from .visualization_hook import TestVisualizationHook  # noqa: F401

__all__ = ['CPUDistributedDataParallel', 'init_cpu_distributed', 'CPUAmpOptimWrapper']

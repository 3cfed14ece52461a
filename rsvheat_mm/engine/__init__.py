from .distributed import CPUDistributedDataParallel, init_cpu_distributed
from .optim_wrappers import CPUAmpOptimWrapper

__all__ = ['CPUDistributedDataParallel', 'init_cpu_distributed', 'CPUAmpOptimWrapper']

"""Wall time of a step: warm-up, then timed iterations between device
synchronisations."""
import math
import time
from typing import Callable, Dict, Optional

import torch

__all__ = ['time_step', 'synchronize']


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], None], device='cpu', warmup: int = 2,
              iters: int = 5, first_warmup: Optional[Callable] = None) -> Dict:
    """Run ``warmup`` untimed, then ``iters`` timed calls of ``step``.

    Each timed call is bracketed by device synchronisation and
    ``time.perf_counter``. ``first_warmup`` (a context-manager factory),
    if given, wraps the first warm-up call, e.g. to record its ops.

    Returns ``iter_times`` (s) and their ``median``, ``mean``, ``min`` and
    ``std``.
    """
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    for i in range(warmup):
        if i == 0 and first_warmup is not None:
            with first_warmup():
                step()
        else:
            step()
    synchronize(device)
    times = []
    for _ in range(iters):
        synchronize(device)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    ordered = sorted(times)
    n = len(times)
    median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
    mean = sum(times) / n
    std = math.sqrt(sum((t - mean)**2 for t in times) / n)
    return dict(iter_times=times, median=median, mean=mean, min=ordered[0], std=std)

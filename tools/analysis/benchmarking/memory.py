"""Memory of one step, and of a process, measured from the outside.

Three measurements, each on the model's real code path (no dispatch mode, no
hook on the model):

* :class:`StepMemory` -- the peak memory of one step and the *activation
  memory* = peak - what was held before the step: CUDA's
  ``max_memory_allocated``, or on CPU the process's resident high-water mark
  (``VmHWM``) after resetting it through ``/proc/self/clear_refs``, with
  glibc's mmap threshold fixed so that freed tensors leave the resident set.
* :class:`TensorPeak` -- on CPU, the peak of the bytes PyTorch's allocator
  hands out during the step (the CPU analogue of CUDA's
  ``max_memory_allocated``), from the allocation events of
  ``torch.profiler`` with ``profile_memory=True``.
* :func:`process_memory` -- ``VmRSS`` / ``VmHWM`` of this process, used by
  :mod:`.resident` for the resident-memory growth of a fresh process.

:class:`LiveBytesMode` counts the storages that ops create while it is
active. It is a ``TorchDispatchMode``, so a model may take another path under
it (RS-vHeat's fused oneDNN linear steps aside): it serves the fake-tensor
*estimate* for ``--mem-budget`` and tests, not the reported figures.

Process-wide effects, all confined to the measuring process and undone where
possible: glibc ``mallopt(M_MMAP_THRESHOLD)`` (restored to the steady-state
32 MiB after each measurement), ``malloc_trim``, writing ``5`` to
``/proc/self/clear_refs`` (resets the kernel's high-water mark of this
process only), ``gc.collect``, ``torch.cuda.empty_cache``.
"""
import contextlib
import ctypes
import ctypes.util
import gc
import os
import sys
import weakref
from typing import Dict, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

__all__ = [
    'MiB', 'GiB', 'LiveBytesMode', 'TensorPeak', 'StepMemory', 'cpu_memory_method',
    'configure_malloc', 'release_memory', 'process_memory', 'reset_peak_rss', 'held_bytes'
]

MiB = float(1 << 20)
GiB = float(1 << 30)


# ---------------------------------------------------------------------------
# Dispatch-level storage accounting (real or fake tensors)
# ---------------------------------------------------------------------------
class LiveBytesMode(TorchDispatchMode):
    """Peak bytes of storages created by ops while this mode is active.

    Every tensor an op returns is looked up by its storage; a new storage adds
    its size to ``live`` and a weak reference removes it when the storage is
    freed (views and in-place results share the storage and add nothing).
    Tensors that exist before (parameters, inputs) are not counted, so
    ``peak`` estimates the memory a step needs on top of what it starts
    with. On fake tensors the sizes are exact and nothing is allocated; what
    it cannot see is allocator rounding and library workspaces.
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen = WeakIdKeyDictionary()

    def _free(self, nbytes):
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # Storages an op receives existed already (parameters, caches, the
        # input): an op that hands one back (``x.to(x.dtype)``, views, in-place
        # results) must not count it as new.
        for t in tree_leaves((args, kwargs)):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                if st not in self._seen:
                    self._seen[st] = 0
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                if st not in self._seen:
                    nbytes = st.nbytes()
                    self._seen[st] = nbytes
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(st, self._free, nbytes)
        return out


# ---------------------------------------------------------------------------
# Allocator-level tensor peak on CPU (real path)
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ libraries' prints) inside the block;
    Python exceptions still propagate with their messages."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TensorPeak:
    """Peak of CPU tensor bytes allocated inside ``with TensorPeak() as t:``.

    ``torch.profiler`` with ``profile_memory=True`` records every allocation
    and free of PyTorch's CPU allocator with its size; their running sum over
    the block, in time order, peaks at ``t.peak`` (bytes on top of what was
    allocated at entry). No dispatch mode or hook is involved, so the model
    runs exactly as unprofiled. Not seen, as with CUDA's
    ``max_memory_allocated``: memory that libraries allocate themselves
    (oneDNN/MKL scratch, the buffers of NumPy arrays wrapped as tensors, e.g.
    RS-vHeat's pocketfft DCT outputs) -- the resident-set figures of
    :class:`StepMemory` include those.
    """

    def __init__(self):
        self.peak = None
        self.net = None
        self._prof = None

    def __enter__(self):
        from torch.profiler import ProfilerActivity, profile
        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        with _quiet_stderr():  # Kineto prints start/stop lines on every run
            self._prof.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        with _quiet_stderr():
            self._prof.__exit__(exc_type, exc, tb)
        if exc_type is not None:
            return False
        # '[memory]' events: +bytes for an allocation, -bytes for a free.
        events = [e for e in self._prof.profiler.kineto_results.events()
                  if e.name() == '[memory]' and str(e.device_type()).endswith('CPU')]
        live = peak = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            live += e.nbytes()
            peak = max(peak, live)
        self.peak, self.net = peak, live
        self._prof = None
        return False


# ---------------------------------------------------------------------------
# Resident memory of the process (CPU)
# ---------------------------------------------------------------------------
_LIBC = None
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
            _LIBC.malloc_trim  # noqa: B018  (glibc only)
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC or None


#: glibc's largest dynamic mmap threshold on 64-bit, where it settles once
#: big blocks have been freed: the steady state of a long-running job.
STEADY_MMAP_THRESHOLD = 32 << 20
#: Threshold while a step's memory is measured.
MEASURE_MMAP_THRESHOLD = 1 << 20


def configure_malloc(mmap_threshold: int = MEASURE_MMAP_THRESHOLD) -> bool:
    """Serve every heap block of at least ``mmap_threshold`` bytes by mmap.

    glibc raises its mmap threshold dynamically (up to 32 MiB) whenever an
    mmap'ed block is freed; blocks below it come from the heap, whose freed
    pages stay resident and are reused by whatever comes next. With a small
    fixed threshold (1 MiB) every tensor of some size gets its own mapping
    and gives its pages back when freed, so the resident set follows the
    live tensors and its high-water mark is the step's real peak. Returns
    False where glibc's ``mallopt`` is not available.
    """
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)))


def release_memory(device: Optional[torch.device] = None, collect: bool = True) -> None:
    """Collect garbage, give freed heap back to the OS, empty CUDA's cache."""
    if collect:
        gc.collect()
    if device is not None and torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def process_memory() -> Dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (resident high-water mark) of
    this process in bytes, from ``/proc/self/status``."""
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            key = line.split(':', 1)[0]
            if key in ('VmRSS', 'VmHWM'):
                out[key] = int(line.split()[1]) * 1024
    return out


def reset_peak_rss() -> None:
    """Reset the kernel's resident high-water mark (``VmHWM``) of this
    process to its current resident set."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def cpu_memory_method() -> Optional[str]:
    """Why the CPU peak cannot be measured here, or None when it can."""
    if not os.path.exists('/proc/self/status'):
        return 'no /proc/self/status (not Linux)'
    try:
        reset_peak_rss()
    except OSError as e:
        return f'cannot reset the high-water mark via /proc/self/clear_refs ({e})'
    return None


def held_bytes(device) -> int:
    """What the process holds now: CUDA allocated or CPU resident bytes."""
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.memory_allocated(device)
    return process_memory()['VmRSS']


class StepMemory:
    """Peak memory of the code run inside ``with StepMemory(device) as m:``.

    * CUDA: ``torch.cuda.max_memory_allocated`` after
      ``reset_peak_memory_stats``; ``before`` is ``memory_allocated`` at
      entry (tensor memory only; the caching allocator's reserve and CUDA
      context are not included).
    * CPU: the resident set of the whole process. At entry garbage is
      collected, freed heap is returned to the OS (``malloc_trim``), the
      kernel's resident high-water mark is reset (``echo 5 >
      /proc/self/clear_refs``) and ``VmRSS`` read as ``before``; at exit
      ``VmHWM`` is the peak. Inside the block glibc's mmap threshold is
      ``MEASURE_MMAP_THRESHOLD`` (1 MiB, see :func:`configure_malloc`) so
      that freed tensors leave the resident set; at exit it is set to
      ``STEADY_MMAP_THRESHOLD`` (32 MiB, where glibc's dynamic threshold
      settles in a long job), the setting timings should run under.

    After the block: ``before``, ``peak`` and ``activation = peak - before``
    (bytes; the memory the step needs on top of what the process held) and
    ``method``.
    """

    def __init__(self, device='cpu'):
        self.device = torch.device(device)
        self.before = self.peak = self.activation = None
        self.method = None
        self._mallopt = False

    def __enter__(self):
        release_memory(self.device)
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
            self.method = 'cuda max_memory_allocated'
        else:
            problem = cpu_memory_method()
            if problem is not None:
                raise RuntimeError(f'cannot measure CPU peak memory: {problem}')
            self._mallopt = configure_malloc(MEASURE_MMAP_THRESHOLD)
            release_memory(self.device, collect=False)  # heap freed under the old threshold
            reset_peak_rss()
            self.before = process_memory()['VmRSS']
            self.method = 'process VmHWM - VmRSS (clear_refs reset' + \
                (', malloc_trim)' if _libc() is not None else ')')
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.device.type == 'cuda':
            if exc_type is None:
                torch.cuda.synchronize(self.device)
                self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            if exc_type is None:
                self.peak = process_memory()['VmHWM']
            if self._mallopt:
                configure_malloc(STEADY_MMAP_THRESHOLD)
        if exc_type is not None:
            return False
        self.activation = max(0, self.peak - self.before)
        return False

    def as_dict(self) -> Dict:
        return dict(mem_before_bytes=self.before, mem_peak_bytes=self.peak,
                    mem_activation_bytes=self.activation, mem_method=self.method)

"""Measuring one training or inference step of a model: FLOPs, time, memory.

Toolbox-free helpers behind ``tools/analysis/benchmark.py`` (see
``docs/benchmark.md``), usable on any ``nn.Module``:

* :func:`count_step_cost` -- FLOPs of a step counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` while the step runs on
  *fake* tensors (:class:`~torch._subclasses.fake_tensor.FakeTensorMode`):
  nothing is computed, so a 4096 x 4096 image costs no more than a tiny one,
  yet every op is dispatched exactly as on the real device (same SDPA
  kernel, same DCT path). It also estimates the bytes a step allocates on top
  of what exists before it (:class:`LiveBytesMode`), used to skip sizes that
  would not fit a memory budget.
* :class:`StepMemory` -- the real peak memory of a step: CUDA's
  ``max_memory_allocated``, or on CPU the process' resident high-water mark
  (``VmHWM``) after resetting it through ``/proc/self/clear_refs``.
* :func:`time_step` -- warm-up, then timed iterations (CUDA synchronised).
* :func:`growth_exponent` -- log-log slope of a figure against pixel count.

FLOP convention: one multiply-add = 2 FLOPs (``FlopCounterMode``'s); MACs
are reported as FLOPs / 2. Counted ops are the GEMMs (``mm``, ``addmm``,
``bmm``, ``baddbmm``), convolutions and attention kernels -- plus, added
here, the CPU flash-attention kernel that ``FlopCounterMode`` does not know
(``_scaled_dot_product_flash_attention_for_cpu``, forward and backward) and
the FFTs (``_fft_r2c``/``_fft_c2r``/``_fft_c2c``, counted analytically as
``5 n log2 n`` FLOPs per complex and ``2.5 n log2 n`` per real length-``n``
transform) and RS-vHeat's pocketfft DCT op (``rsvheat.pocketfft_dct``, a real
FFT of the same length: ``2.5 n log2 n`` per axis). Element-wise ops (norms, activations, softmax, the heat decay
multiply) are not counted, as in every FLOP table these models are compared
with.
"""
import ctypes
import ctypes.util
import gc
import math
import os
import time
import weakref
from typing import Callable, Dict, Optional, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import (FlopCounterMode, sdpa_backward_flop_count,
                                      sdpa_flop_count)
from torch.utils.weak import WeakIdKeyDictionary

__all__ = [
    'EXTRA_FLOP_FORMULAS', 'LiveBytesMode', 'OpRecorder', 'count_step_cost',
    'StepMemory', 'cpu_memory_method', 'configure_malloc', 'release_memory', 'process_memory',
    'time_step', 'growth_exponent', 'extrapolate', 'summarize_attention_ops'
]

aten = torch.ops.aten
MiB = float(1 << 20)


# ---------------------------------------------------------------------------
# FLOP formulas FlopCounterMode lacks
# ---------------------------------------------------------------------------
def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                            out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _fft_cost(shape, dims, flops_per_point_log2):
    """``c * n log2 n`` per length-n transform, summed over the FFT'd dims."""
    numel = math.prod(shape)
    total = 0.0
    for d in dims:
        n = shape[d]
        if n > 1:
            # numel / n transforms of length n, each c * n * log2(n).
            total += flops_per_point_log2 * numel * math.log2(n)
    return int(round(total))


def _fft_r2c_flop(self_shape, dim, *args, out_shape=None, **kwargs):
    return _fft_cost(self_shape, dim, 2.5)  # real input: half a complex FFT


def _fft_c2r_flop(self_shape, dim, *args, out_shape=None, **kwargs):
    return _fft_cost(out_shape, dim, 2.5)


def _fft_c2c_flop(self_shape, dim, *args, out_shape=None, **kwargs):
    return _fft_cost(self_shape, dim, 5.0)


def _pocketfft_dct_flop(x_shape, dims, inverse, *args, out_shape=None, **kwargs):
    """RS-vHeat's pocketfft DCT: a real FFT of the same length per axis."""
    return _fft_cost(x_shape, dims, 2.5)


def _onednn_linear_flop(x_shape, w_shape, *args, out_shape=None, **kwargs):
    """oneDNN linear (RSVHeat's CPU inference path): 2 * rows * in * out."""
    return 2 * math.prod(x_shape[:-1]) * x_shape[-1] * w_shape[0]


#: Extra ``custom_mapping`` entries for :class:`FlopCounterMode`.
EXTRA_FLOP_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
    aten._fft_r2c: _fft_r2c_flop,
    aten._fft_c2r: _fft_c2r_flop,
    aten._fft_c2c: _fft_c2c_flop,
}
if hasattr(torch.ops.mkldnn, '_linear_pointwise'):
    EXTRA_FLOP_FORMULAS[torch.ops.mkldnn._linear_pointwise] = _onednn_linear_flop
EXTRA_FLOP_FORMULAS[torch.ops.rsvheat.pocketfft_dct] = _pocketfft_dct_flop
#: Ops of fast (O(n log n)) transforms, the non-GEMM share of the DCT FLOPs.
FFT_OPS = ('aten._fft_r2c', 'aten._fft_c2r', 'aten._fft_c2c', 'rsvheat.pocketfft_dct')


# ---------------------------------------------------------------------------
# Dispatch-level recorders (work on real and on fake tensors)
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


class OpRecorder(TorchDispatchMode):
    """Names of the aten ops dispatched while active (e.g. which attention
    kernel a model really calls)."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def summarize_attention_ops(ops) -> str:
    """How a model computes attention, from the ops it dispatched."""
    sdpa = sorted(o for o in ops if 'scaled_dot_product' in o or 'attention' in o)
    if sdpa:
        return 'SDPA: ' + ', '.join(o.replace('aten.', '') for o in sdpa)
    if any('softmax' in o for o in ops) and \
            any(o in ('aten.bmm', 'aten.baddbmm', 'aten.matmul') for o in ops):
        return 'explicit matmul + softmax'
    return 'none'


def count_step_cost(step: Callable[[], None],
                    warm: bool = False,
                    track_memory: bool = False) -> Dict:
    """FLOPs (and optionally the extra bytes) of ``step`` on fake tensors.

    ``step`` must create its inputs itself (inside it, tensor factories
    return fake tensors); the model's real parameters are used as they are
    (converted to fake on the fly), so build and move the model as for the
    real run. Call site's duty afterwards: drop any cache the model filled
    with fake tensors and set ``.grad`` to None.

    Args:
        step (callable): One training or inference step.
        warm (bool): Run ``step`` once before counting, so that per-size
            caches (e.g. RS-vHeat's inference-time heat decay) are filled as
            in a steady-state step. Defaults to False.
        track_memory (bool): Also estimate the step's peak extra bytes with
            :class:`LiveBytesMode`. Defaults to False.

    Returns:
        dict: ``flops`` (total), ``flops_by_op`` ({op name: flops}) and,
        with ``track_memory``, ``est_step_bytes``.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        if warm:
            step()
        live = LiveBytesMode() if track_memory else None
        counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
        if live is not None:
            with live, counter:
                step()
        else:
            with counter:
                step()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get('Global', {}).items()}
    out = dict(flops=int(counter.get_total_flops()), flops_by_op=by_op)
    if live is not None:
        out['est_step_bytes'] = int(live.peak)
    return out


# ---------------------------------------------------------------------------
# Peak memory of a real step
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


def cpu_memory_method() -> Optional[str]:
    """Why the CPU peak cannot be measured here, or None when it can."""
    if not os.path.exists('/proc/self/status'):
        return 'no /proc/self/status (not Linux)'
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError as e:
        return f'cannot reset the high-water mark via /proc/self/clear_refs ({e})'
    return None


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
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
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


# ---------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------
def _sync(device):
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
    _sync(device)
    times = []
    for _ in range(iters):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    ordered = sorted(times)
    n = len(times)
    median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
    mean = sum(times) / n
    std = math.sqrt(sum((t - mean)**2 for t in times) / n)
    return dict(iter_times=times, median=median, mean=mean, min=ordered[0], std=std)


# ---------------------------------------------------------------------------
# Growth
# ---------------------------------------------------------------------------
def growth_exponent(pixels: Sequence[float], values: Sequence[Optional[float]],
                    min_pixels: float = 0) -> Optional[float]:
    """Least-squares slope of ``log(value)`` against ``log(pixels)``.

    Only points with ``pixels >= min_pixels`` and a positive value are used;
    None when fewer than two distinct pixel counts remain. A slope ``a``
    means the figure grows like ``N ** a`` in the pixel count ``N``.
    """
    pts = [(math.log(p), math.log(v)) for p, v in zip(pixels, values)
           if v is not None and v > 0 and p >= min_pixels]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx)**2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    return sxy / sxx


def extrapolate(pixels: Sequence[float], values: Sequence[float], target: float,
                min_exponent: float = 1.0) -> Optional[float]:
    """Predict the value at ``target`` pixels from the last two points.

    Power law through the two largest measured sizes, with the exponent
    clamped below at ``min_exponent`` (nothing these backbones do grows
    slower than the pixel count). None with fewer than two points.
    """
    pts = sorted((p, v) for p, v in zip(pixels, values) if v is not None and v > 0)
    if len(pts) < 2 or pts[-1][0] == pts[-2][0]:
        return None
    (p0, v0), (p1, v1) = pts[-2], pts[-1]
    expo = max(min_exponent, math.log(v1 / v0) / math.log(p1 / p0))
    return v1 * (target / p1)**expo


"""FLOPs of one step, counted on fake tensors, and the ops it dispatches.

* :func:`count_step_cost` -- FLOPs of a step counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` while the step runs on
  *fake* tensors (:class:`~torch._subclasses.fake_tensor.FakeTensorMode`):
  nothing is computed, so a 4096 x 4096 image costs no more than a tiny one,
  yet every op is dispatched as on the real device (same SDPA kernel, same
  DCT path). It can also estimate the bytes the step allocates on top of
  what exists before it (:class:`.memory.LiveBytesMode`), which the
  ``--mem-budget`` prediction uses.
* :class:`OpRecorder` / :func:`summarize_attention_ops` -- which aten ops a
  real step dispatches, e.g. which attention kernel a model really calls.

FLOP convention: one multiply-add = 2 FLOPs (``FlopCounterMode``'s); MACs
are FLOPs / 2. Counted are the ops ``FlopCounterMode`` has formulas for --
GEMMs, convolutions, the CUDA attention kernels and every op that registers
its own formula, such as RS-vHeat's pocketfft DCT ``rsvheat.pocketfft_dct``
-- plus :data:`EXTRA_FLOP_FORMULAS` for what torch itself lacks: the CPU
flash-attention kernel (forward and backward) and the FFTs
(``_fft_r2c``/``_fft_c2r`` ``2.5 n log2 n`` and ``_fft_c2c`` ``5 n log2 n``
FLOPs per length-``n`` transform). Element-wise ops (norms, activations,
softmax, the heat decay multiply) are not counted, as in every FLOP table
these models are compared with.

The counter attributes nothing to modules (:func:`flop_counter`): the
module tracking of ``FlopCounterMode`` registers global forward hooks, and
RS-vHeat's fused training blocks step aside when hooks are registered, so a
plain ``FlopCounterMode`` counts RS-vHeat's plain-autograd training step, not
the fused one that runs (inference FLOPs are the same on both paths).
"""
import math
from typing import Callable, Dict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import (FlopCounterMode, flop_registry,
                                      sdpa_backward_flop_count, sdpa_flop_count)

from .memory import LiveBytesMode

__all__ = [
    'EXTRA_FLOP_FORMULAS', 'FFT_OPS', 'flop_counter', 'count_step_cost', 'OpRecorder',
    'summarize_attention_ops'
]

aten = torch.ops.aten


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


_CANDIDATES = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
    aten._fft_r2c: _fft_r2c_flop,
    aten._fft_c2r: _fft_c2r_flop,
    aten._fft_c2c: _fft_c2c_flop,
}
#: ``custom_mapping`` entries for :class:`FlopCounterMode`: only the ops the
#: installed torch has no formula for (a newer torch that adds one wins).
EXTRA_FLOP_FORMULAS = {op: f for op, f in _CANDIDATES.items() if op not in flop_registry}
#: Ops of fast (O(n log n)) transforms: the counted share of the DCT FLOPs
#: that is not a GEMM.
FFT_OPS = ('aten._fft_r2c', 'aten._fft_c2r', 'aten._fft_c2c', 'rsvheat.pocketfft_dct')


class _TotalsOnly:
    """Stands in for ``FlopCounterMode``'s ``ModuleTracker``, which registers
    *global* module forward hooks to attribute FLOPs to modules. RS-vHeat's
    fused training blocks and lean inference step aside whenever a forward
    hook is registered (hook-based tools must see every module called), so
    with the tracker the counter would count the plain-autograd path instead
    of the one that is measured. Only totals are needed here: everything is
    attributed to ``'Global'`` and no hook is registered."""

    parents = {'Global'}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def flop_counter() -> FlopCounterMode:
    """``FlopCounterMode`` with :data:`EXTRA_FLOP_FORMULAS`, counting totals
    without registering module hooks (see :class:`_TotalsOnly`)."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    if not hasattr(counter, 'mod_tracker'):  # pragma: no cover - other torch versions
        raise RuntimeError('torch.utils.flop_counter.FlopCounterMode has no mod_tracker: '
                           'update benchmarking/flops.py for this torch version')
    counter.mod_tracker = _TotalsOnly()
    return counter


def count_step_cost(step: Callable[[], None],
                    warm: bool = False,
                    track_memory: bool = False) -> Dict:
    """FLOPs (and optionally the extra bytes) of ``step`` on fake tensors.

    ``step`` must create its inputs itself (inside it, tensor factories
    return fake tensors); the model's real parameters are used as they are
    (converted to fake on the fly), so build and move the model as for the
    real run. Call site's duty afterwards: set ``.grad`` to None (fake
    gradients). Caches such as RS-vHeat's ``ResolutionCache`` do not keep
    values computed under a dispatch mode.

    Args:
        step (callable): One training or inference step.
        warm (bool): Run ``step`` once before counting, as the real
            measurement runs warm-up steps first. Defaults to False.
        track_memory (bool): Also estimate the step's peak extra bytes with
            :class:`~.memory.LiveBytesMode`. Defaults to False.

    Returns:
        dict: ``flops`` (total), ``flops_by_op`` ({op name: flops}) and,
        with ``track_memory``, ``est_step_bytes``.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        if warm:
            step()
        live = LiveBytesMode() if track_memory else None
        counter = flop_counter()
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

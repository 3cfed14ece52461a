"""The Heat Conduction Operator (HCO).

Features diffuse like heat on an H x W plate with insulated (Neumann)
borders. The heat equation's eigenfunctions there are cosines, so the exact
solution at time t = 1 is a per-frequency, per-channel decay in the DCT-II
domain::

    U_out = IDCT2D( DCT2D(U_in) * exp(-K[n, m, c] * lam[n, m]) )
    lam[n, m] = (n * pi / H) ** 2 + (m * pi / W) ** 2

with ``K >= 0`` the (learned) conductivity. This module holds the pieces
shared by every block of every backbone: the orthonormal DCT-II bases (cached
per size, device and dtype, in one bounded cache), the frequency grid, the 2-D transforms as batched
matrix products (no permutes: they act on the spatial axes of channels-last
``(B, H, W, C)`` or channels-first ``(B, C, H, W)`` tensors in place), fast
transforms for large maps (scipy's pocketfft DCT on CPUs, a torch.fft one
for any device), and the decay ``exp(-K * lam)`` computed in float32 even
under autocast.
"""
import math
from typing import List, Optional, Tuple

import numpy as np
import scipy.fft
import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from .fused_ops import _use_onednn, capturing_graph, dispatch_mode_active
from .fused_ops import linear as _onednn_linear
from .resolution_cache import ResolutionCache

__all__ = [
    'dct_matrix', 'heat_frequencies', 'heat_decay', 'dct2d', 'idct2d',
    'heat_conduction', 'clear_heat_caches', 'pocketfft_dct', 'axis_impl', 'HEAT_CACHE',
    'transform_'
]

#: DCT bases, frequency grids and FFT twiddles of the sizes in use, shared by
#: every block and model of the process, least recently used dropped beyond
#: the budget (``HEAT_CACHE.max_bytes = ...`` changes it; a 1024-point basis
#: is 4 MiB in fp32).
HEAT_CACHE = ResolutionCache(64 << 20)


def clear_heat_caches():
    """Drop all cached bases, frequency grids and FFT twiddles."""
    HEAT_CACHE.clear()


def dct_matrix(n: int,
               device: Optional[torch.device] = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Orthonormal DCT-II matrix ``C`` of size ``n x n`` (``X^ = C @ x``).

    ``C[f, p] = s_f * cos(pi * f * (p + 0.5) / n)`` with ``s_0 = sqrt(1/n)``
    and ``s_f = sqrt(2/n)``; equal to ``scipy.fft.dct(norm='ortho')``. Built
    in float64 and cached per ``(n, device, dtype)``: every block of every
    stage at that size shares the one tensor. Its inverse is ``C.T``.
    """
    device = torch.device('cpu') if device is None else torch.device(device)
    return HEAT_CACHE.get(('dct', n, device, dtype), (), lambda: _build_basis(n, device, dtype))


def _build_basis(n, device, dtype):
    f = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    p = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    basis = torch.cos(math.pi * f * (p + 0.5) / n) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    return basis.to(device=device, dtype=dtype)


def heat_frequencies(h: int,
                     w: int,
                     device: Optional[torch.device] = None) -> Tensor:
    """Eigenvalues ``lam[n, m] = (n pi / h)^2 + (m pi / w)^2``, float32.

    Frequencies are normalised to ``[0, pi)`` at every resolution, so the
    same ``K`` means the same relative amount of smoothing at any size.
    Shape ``(h, w, 1)`` to broadcast over channels-last ``(..., h, w, C)``.
    """
    device = torch.device('cpu') if device is None else torch.device(device)
    return HEAT_CACHE.get(('lam', h, w, device), (), lambda: _build_frequencies(h, w, device))


def _build_frequencies(h, w, device):
    fh = (torch.arange(h, dtype=torch.float64) * math.pi / h)**2
    fw = (torch.arange(w, dtype=torch.float64) * math.pi / w)**2
    lam = (fh[:, None] + fw[None, :]).unsqueeze(-1)
    return lam.to(device=device, dtype=torch.float32)


def heat_decay(k: Tensor, out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """``exp(-K * lam)`` for a conductivity map ``k`` of shape (H, W, C).

    Always evaluated in float32 (autocast disabled): in bf16/fp16 the decay
    of mid frequencies would lose most of its digits. The result is cast to
    ``out_dtype`` (default: float32).
    """
    h, w = k.shape[0], k.shape[1]
    lam = heat_frequencies(h, w, k.device)
    with torch.autocast(device_type=k.device.type, enabled=False):
        decay = torch.exp(-k.float() * lam)
    return decay if out_dtype is None else decay.to(out_dtype)


# ---------------------------------------------------------------------------
# 1-D transforms along one spatial axis, as matrix products
# ---------------------------------------------------------------------------
def _apply_along(x: Tensor, mat: Tensor, axis: int) -> Tensor:
    """``y[..., f, ...] = sum_p mat[f, p] * x[..., p, ...]`` along ``axis``.

    Chooses the matrix-product form that maps onto one large GEMM (or one
    batched GEMM) without copying ``x``: for the last axis ``x @ mat.T``;
    otherwise ``mat @ x.view(lead, L, rest)`` batched over the leading dims.
    """
    axis = axis % x.dim()
    if axis == x.dim() - 1:
        return torch.matmul(x, mat.transpose(0, 1))
    shape = x.shape
    lead = int(math.prod(shape[:axis]))
    rest = int(math.prod(shape[axis + 1:]))
    x3 = x.reshape(lead, shape[axis], rest)
    if lead <= 8 and _use_onednn(x3, mat):
        # The outer (H) axis of a channels-last map is a short, very wide
        # product (L x L) @ (L x W*C), which oneDNN runs faster than MKL's
        # sgemm on CPUs (inference only, see fused_ops).
        parts = [_onednn_linear(mat, x3[i].t()) for i in range(lead)]
        y = parts[0].unsqueeze(0) if lead == 1 else torch.stack(parts)
    else:
        y = torch.matmul(mat, x3)
    return y.view(shape[:axis] + (mat.shape[0], ) + shape[axis + 1:])


# ---------------------------------------------------------------------------
# FFT-based DCT-II (Makhoul), for very long axes
# ---------------------------------------------------------------------------
def _fft_constants(n, device, real_dtype):
    """Twiddles of the length-n orthonormal DCT-II via FFT (cached)."""
    cdtype = torch.complex128 if real_dtype == torch.float64 else torch.complex64

    def build(sign):
        k = torch.arange(n, dtype=torch.float64)
        scale = torch.full((n, ), math.sqrt(2.0 / n), dtype=torch.float64)
        scale[0] = math.sqrt(1.0 / n)
        if sign < 0:
            return torch.polar(scale, -math.pi * k / (2 * n)).to(device, cdtype)
        return torch.polar(1.0 / scale, math.pi * k / (2 * n)).to(device, cdtype)

    return tuple(HEAT_CACHE.get(('fft', sign, n, device, cdtype), (), lambda: build(sign))
                 for sign in (-1, 1))


def _dct_fft(x: Tensor, axis: int) -> Tensor:
    """Orthonormal DCT-II along ``axis`` in O(L log L) (Makhoul's method).

    With ``v = [x0, x2, x4, ..., x5, x3, x1]``,
    ``X_k = s_k * Re(exp(-i pi k / 2L) * FFT(v)_k)``.
    """
    x = x.movedim(axis, -1)
    n = x.shape[-1]
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    v = torch.cat([xf[..., 0::2], xf[..., 1::2].flip(-1)], dim=-1)
    fwd, _ = _fft_constants(n, x.device, xf.dtype)
    y = (torch.fft.fft(v, dim=-1) * fwd).real
    return y.to(x.dtype).movedim(-1, axis)


def _idct_fft(y: Tensor, axis: int) -> Tensor:
    """Inverse of :func:`_dct_fft` (orthonormal DCT-III).

    ``FFT(v)_k = exp(i pi k / 2L) * (X_k - i X_{L-k})`` with ``X_L = 0``,
    ``X = Y / s``; ``v`` is then un-interleaved back into ``x``.
    """
    y = y.movedim(axis, -1)
    n = y.shape[-1]
    yf = y.float() if y.dtype in (torch.float16, torch.bfloat16) else y
    _, inv = _fft_constants(n, y.device, yf.dtype)
    y_rev = torch.cat([torch.zeros_like(yf[..., :1]), yf[..., 1:].flip(-1)], dim=-1)
    # inv = exp(i pi k / 2L) / s_k; X_{L-k} = Y_{L-k} / s_{L-k} = Y_{L-k} / s_1.
    spec = torch.complex(yf, -y_rev * (inv.abs()[1] / inv.abs()).to(yf.dtype)) * inv
    v = torch.fft.ifft(spec, dim=-1).real
    x = torch.empty_like(v)
    half = (n + 1) // 2
    x[..., 0::2] = v[..., :half]
    x[..., 1::2] = v[..., half:].flip(-1)
    return x.to(y.dtype).movedim(-1, axis)


# ---------------------------------------------------------------------------
# pocketfft DCT (scipy.fft) on CPU, as a torch custom op
# ---------------------------------------------------------------------------
@torch.library.custom_op('rsvheat::pocketfft_dct', mutates_args=())
def pocketfft_dct(x: Tensor, dims: List[int], inverse: bool) -> Tensor:
    """Orthonormal DCT-II over ``dims`` (DCT-III, its inverse, if ``inverse``).

    scipy's pocketfft computes the real-to-real transform directly in
    O(L log L) per axis, multi-threaded over the lines, with no complex
    intermediates: on CPUs it beats the dense GEMMs from axis lengths of
    about 128-192 (``docs/benchmark.md``). Float32/float64 only. As a
    registered op it has a fake (shape) implementation, so FLOP counting and
    memory tracing see it, and an autograd formula: the orthonormal
    transform's adjoint is its inverse, so nothing is saved for backward.
    """
    out = scipy.fft.dctn(x.detach().contiguous().numpy(), type=3 if inverse else 2,
                         axes=dims, norm='ortho', workers=max(1, torch.get_num_threads()))
    return torch.from_numpy(out)


@pocketfft_dct.register_fake
def _pocketfft_dct_fake(x, dims, inverse):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _pocketfft_dct_setup(ctx, inputs, output):
    ctx.dims, ctx.inverse = inputs[1], inputs[2]


def _pocketfft_dct_backward(ctx, grad):
    return pocketfft_dct(grad, ctx.dims, not ctx.inverse), None, None


pocketfft_dct.register_autograd(_pocketfft_dct_backward, setup_context=_pocketfft_dct_setup)


@register_flop_formula(torch.ops.rsvheat.pocketfft_dct)
def _pocketfft_dct_flop(x_shape, dims, inverse, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the op for ``torch.utils.flop_counter.FlopCounterMode``: a
    real-to-real transform costs what a real FFT of the same length does,
    ``2.5 n log2 n`` per line and axis (the convention of FFT FLOP counts)."""
    numel = math.prod(x_shape)
    return int(round(sum(2.5 * numel * math.log2(x_shape[d]) for d in dims if x_shape[d] > 1)))


# ---------------------------------------------------------------------------
# Choice of implementation per axis
# ---------------------------------------------------------------------------
# Axis length from which the fast transform replaces the dense GEMMs under
# impl='auto' (measured with tools/analysis/benchmark.py --profile-dct; see
# docs/benchmark.md): pocketfft on CPUs; on CUDA the GEMMs are kept.
POCKETFFT_MIN_LENGTH = {'cpu': 192}
# The torch.fft path is portable (any device, differentiable, traceable) but
# slower than pocketfft on CPUs; 'auto' never picks it.
FFT_MIN_LENGTH = {'cpu': 1 << 30, 'cuda': 1 << 30}
DCT_IMPLS = ('auto', 'matmul', 'fft', 'scipy')


def _pocketfft_possible(x: Tensor) -> bool:
    # Eager CPU tensors in full precision; traced/exported/compiled graphs
    # keep the portable ops.
    return (x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64)
            and not capturing_graph())


def axis_impl(n: int, x: Tensor, impl: str) -> str:
    """How an axis of length ``n`` of ``x`` is transformed: ``'matmul'``,
    ``'fft'`` (torch.fft) or ``'scipy'`` (pocketfft)."""
    if impl not in DCT_IMPLS:
        raise ValueError(f'dct impl must be one of {DCT_IMPLS}, got {impl!r}')
    if n < 2 or impl == 'matmul':
        return 'matmul'
    if impl == 'scipy':
        if x.device.type != 'cpu':
            raise ValueError(f"dct impl 'scipy' runs on CPU tensors only, got {x.device}")
        return 'scipy'
    if impl == 'fft':
        return 'fft'
    if _pocketfft_possible(x) and n >= POCKETFFT_MIN_LENGTH.get(x.device.type, 1 << 30):
        return 'scipy'
    if n >= FFT_MIN_LENGTH.get(x.device.type, 1 << 30):
        return 'fft'
    return 'matmul'


def _spatial_axes(x: Tensor, channels_last: bool) -> Tuple[int, int]:
    return (x.dim() - 3, x.dim() - 2) if channels_last else (x.dim() - 2, x.dim() - 1)


def _transform(x: Tensor, channels_last: bool, impl: str, inverse: bool) -> Tensor:
    axes = _spatial_axes(x, channels_last)
    kinds = [axis_impl(x.shape[a], x, impl) for a in axes]
    fast = [a for a, k in zip(axes, kinds) if k == 'scipy']
    if fast:  # one pocketfft call for its axes (in fp32 for half precision)
        full = x.dtype in (torch.float32, torch.float64)
        y = pocketfft_dct(x if full else x.float(), fast, inverse)
        x = y if full else y.to(x.dtype)
    # Forward W then H, inverse H then W (the axes commute mathematically):
    # the outer axis's GEMM then sees the larger, contiguous operand.
    order = list(zip(axes, kinds))
    for axis, kind in (order if inverse else reversed(order)):
        n = x.shape[axis]
        if kind == 'fft':
            x = _idct_fft(x, axis) if inverse else _dct_fft(x, axis)
        elif kind == 'matmul':
            mat = dct_matrix(n, x.device, x.dtype)
            x = _apply_along(x, mat.transpose(0, 1) if inverse else mat, axis)
    return x


def dct2d(x: Tensor, channels_last: bool = True, impl: str = 'auto') -> Tensor:
    """Orthonormal 2-D DCT-II over the spatial axes of ``x``.

    Args:
        x (Tensor): ``(..., H, W, C)`` if ``channels_last`` else ``(..., H, W)``.
        channels_last (bool): Layout of ``x``. Defaults to True.
        impl (str): ``'matmul'`` (dense GEMMs against the cached bases),
            ``'scipy'`` (pocketfft, CPU only), ``'fft'`` (torch.fft, any
            device) or ``'auto'``: pocketfft for CPU axes of at least
            ``POCKETFFT_MIN_LENGTH`` outside traced/compiled graphs, GEMMs
            otherwise. All give the same result up to float rounding.
    """
    return _transform(x, channels_last, impl, inverse=False)


def idct2d(x: Tensor, channels_last: bool = True, impl: str = 'auto') -> Tensor:
    """Inverse of :func:`dct2d` (the bases are orthogonal: ``C^-1 = C^T``)."""
    return _transform(x, channels_last, impl, inverse=True)


def transform_(x: Tensor, channels_last: bool = True, impl: str = 'auto',
               inverse: bool = False) -> Tensor:
    """:func:`dct2d` (or :func:`idct2d`) that may overwrite ``x``, for
    inference: when pocketfft runs every spatial axis (large CPU maps) it
    transforms ``x`` in place and returns it, saving one activation-sized
    buffer; otherwise it returns a new tensor as :func:`dct2d` does. Never
    while autograd records or a dispatch mode (fake tensors, FLOP counters)
    is active: those get the registered op."""
    axes = _spatial_axes(x, channels_last)
    if (not torch.is_grad_enabled() and not x.requires_grad and x.is_contiguous()
            and x.dtype in (torch.float32, torch.float64) and not dispatch_mode_active()
            and all(axis_impl(x.shape[a], x, impl) == 'scipy' for a in axes)):
        arr = x.numpy()
        out = scipy.fft.dctn(arr, type=3 if inverse else 2, axes=axes, norm='ortho',
                             overwrite_x=True, workers=max(1, torch.get_num_threads()))
        if not np.shares_memory(out, arr):
            arr[...] = out
        return x
    return _transform(x, channels_last, impl, inverse)


def heat_conduction(x: Tensor,
                    decay: Tensor,
                    channels_last: bool = True,
                    impl: str = 'auto') -> Tensor:
    """Apply the HCO: ``IDCT2D(DCT2D(x) * decay)``.

    Args:
        x (Tensor): ``(B, H, W, C)`` (or ``(B, C, H, W)`` with
            ``channels_last=False``).
        decay (Tensor): ``exp(-K * lam)`` of shape ``(H, W, C)`` (or
            ``(C, H, W)``), e.g. from :func:`heat_decay`.
        channels_last (bool): Layout of ``x`` and ``decay``.
        impl (str): DCT implementation, see :func:`dct2d`.
    """
    spec = dct2d(x, channels_last, impl)
    spec = spec * decay.to(spec.dtype)
    return idct2d(spec, channels_last, impl)

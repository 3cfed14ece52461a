"""The Heat Conduction Operator (HCO).

Features diffuse like heat on an H x W plate with insulated (Neumann)
borders. The heat equation's eigenfunctions there are cosines, so the exact
solution at time t = 1 is a per-frequency, per-channel decay in the DCT-II
domain::

    U_out = IDCT2D( DCT2D(U_in) * exp(-K[n, m, c] * lam[n, m]) )
    lam[n, m] = (n * pi / H) ** 2 + (m * pi / W) ** 2

with ``K >= 0`` the (learned) conductivity. This module holds the pieces
shared by every block of every backbone: the orthonormal DCT-II bases (cached
per size, device and dtype), the frequency grid, the 2-D transforms as batched
matrix products (no permutes: they act on the spatial axes of channels-last
``(B, H, W, C)`` or channels-first ``(B, C, H, W)`` tensors in place), an
FFT-based transform for very large maps, and the decay ``exp(-K * lam)``
computed in float32 even under autocast.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .fused_ops import _use_onednn
from .fused_ops import linear as _onednn_linear

__all__ = [
    'dct_matrix', 'heat_frequencies', 'heat_decay', 'dct2d', 'idct2d',
    'heat_conduction', 'clear_heat_caches'
]

_BASIS_CACHE = {}
_FREQ_CACHE = {}
_FFT_CACHE = {}
_CACHE_LIMIT = 64  # distinct (size, device, dtype) entries kept per cache


def _cached(build):
    """Run a cache builder outside inference mode and autograd.

    Tensors created under ``torch.inference_mode()`` cannot be saved for
    backward; a cache filled during an inference pass would then break the
    next training step at the same size.
    """

    def wrapper(*args, **kwargs):
        with torch.inference_mode(False), torch.no_grad():
            return build(*args, **kwargs)

    return wrapper


def _cache_put(cache, key, value):
    if len(cache) >= _CACHE_LIMIT:
        cache.pop(next(iter(cache)))  # drop the oldest entry
    cache[key] = value
    return value


def clear_heat_caches():
    """Drop all cached bases, frequency grids and FFT twiddles."""
    _BASIS_CACHE.clear()
    _FREQ_CACHE.clear()
    _FFT_CACHE.clear()


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
    key = (n, device, dtype)
    basis = _BASIS_CACHE.get(key)
    if basis is None:
        basis = _build_basis(n, device, dtype)
        _cache_put(_BASIS_CACHE, key, basis)
    return basis


@_cached
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
    key = (h, w, device)
    lam = _FREQ_CACHE.get(key)
    if lam is None:
        lam = _cache_put(_FREQ_CACHE, key, _build_frequencies(h, w, device))
    return lam


@_cached
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
        # product (L x L) @ (L x W*C); oneDNN runs it 1.4-1.7x faster than
        # MKL's sgemm on CPUs (inference only, see fused_ops).
        parts = [_onednn_linear(mat, x3[i].t()) for i in range(lead)]
        y = parts[0].unsqueeze(0) if lead == 1 else torch.stack(parts)
    else:
        y = torch.matmul(mat, x3)
    return y.view(shape[:axis] + (mat.shape[0], ) + shape[axis + 1:])


# ---------------------------------------------------------------------------
# FFT-based DCT-II (Makhoul), for very long axes
# ---------------------------------------------------------------------------
@_cached
def _fft_constants(n, device, real_dtype):
    """Twiddles of the length-n orthonormal DCT-II via FFT (cached)."""
    key = (n, device, real_dtype)
    consts = _FFT_CACHE.get(key)
    if consts is None:
        k = torch.arange(n, dtype=torch.float64)
        scale = torch.full((n, ), math.sqrt(2.0 / n), dtype=torch.float64)
        scale[0] = math.sqrt(1.0 / n)
        cdtype = torch.complex128 if real_dtype == torch.float64 else torch.complex64
        fwd = torch.polar(scale, -math.pi * k / (2 * n)).to(device, cdtype)
        inv = torch.polar(1.0 / scale, math.pi * k / (2 * n)).to(device, cdtype)
        consts = _cache_put(_FFT_CACHE, key, (fwd, inv))
    return consts


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


# Axis length from which the FFT path beats the dense GEMM on CPUs (measured
# with tools/analysis/benchmark.py --profile-dct; see docs/benchmark.md).
FFT_MIN_LENGTH = {'cpu': 1024, 'cuda': 1 << 30}


def _use_fft(n: int, device: torch.device, impl: str) -> bool:
    if impl not in ('auto', 'fft', 'matmul'):
        raise ValueError(f"dct impl must be 'auto', 'fft' or 'matmul', got {impl!r}")
    if n < 2:
        return False
    if impl == 'fft':
        return True
    if impl == 'matmul':
        return False
    return n >= FFT_MIN_LENGTH.get(device.type, 1 << 30)


def _spatial_axes(x: Tensor, channels_last: bool) -> Tuple[int, int]:
    return (x.dim() - 3, x.dim() - 2) if channels_last else (x.dim() - 2, x.dim() - 1)


def dct2d(x: Tensor, channels_last: bool = True, impl: str = 'auto') -> Tensor:
    """Orthonormal 2-D DCT-II over the spatial axes of ``x``.

    Args:
        x (Tensor): ``(..., H, W, C)`` if ``channels_last`` else ``(..., H, W)``.
        channels_last (bool): Layout of ``x``. Defaults to True.
        impl (str): ``'matmul'`` (dense GEMMs), ``'fft'`` or ``'auto'``
            (FFT only for axes of at least ``FFT_MIN_LENGTH`` on the device).
    """
    ax_h, ax_w = _spatial_axes(x, channels_last)
    h, w = x.shape[ax_h], x.shape[ax_w]
    dtype = x.dtype if x.dtype != torch.float64 else torch.float64
    if _use_fft(w, x.device, impl):
        x = _dct_fft(x, ax_w)
    else:
        x = _apply_along(x, dct_matrix(w, x.device, dtype), ax_w)
    if _use_fft(h, x.device, impl):
        return _dct_fft(x, ax_h)
    return _apply_along(x, dct_matrix(h, x.device, dtype), ax_h)


def idct2d(x: Tensor, channels_last: bool = True, impl: str = 'auto') -> Tensor:
    """Inverse of :func:`dct2d` (the bases are orthogonal: ``C^-1 = C^T``)."""
    ax_h, ax_w = _spatial_axes(x, channels_last)
    h, w = x.shape[ax_h], x.shape[ax_w]
    dtype = x.dtype
    if _use_fft(h, x.device, impl):
        x = _idct_fft(x, ax_h)
    else:
        x = _apply_along(x, dct_matrix(h, x.device, dtype).transpose(0, 1), ax_h)
    if _use_fft(w, x.device, impl):
        return _idct_fft(x, ax_w)
    return _apply_along(x, dct_matrix(w, x.device, dtype).transpose(0, 1), ax_w)


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

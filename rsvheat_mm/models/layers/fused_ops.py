"""Fused CPU inference kernels for the backbone's per-pixel linear layers.

In inference on CPU, ``F.linear`` is an MKL GEMM preceded by a full pass
that broadcasts the bias into the output, and the MLP's GELU is another pass
over the 4C-wide hidden activations -- a sizeable share of RS-vHeat's CPU
inference time on large maps (docs/benchmark.md). oneDNN's linear kernel
(the one PyTorch's own inductor/freezing path uses) applies the bias and an
exact (erf) GELU in the GEMM's epilogue, in float32 and, under CPU bf16
autocast on CPUs with native bf16, in bfloat16. Training, other autocast
dtypes and other devices keep the plain PyTorch ops: the fused kernel has no
autograd formula. So do traced graphs and code run under a dispatch mode (FLOP
counters, fake tensors), which know the standard ops.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['linear', 'fused_dtype', 'operands_for', 'onednn_linear_available', 'onednn_bf16_native',
           'capturing_graph', 'dispatch_mode_active']


def capturing_graph() -> bool:
    """True while torch.jit traces, ONNX exports or torch.compile captures:
    those graphs need the portable ops, not eager-only kernels or in-place
    buffer reuse."""
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling())


def dispatch_mode_active() -> bool:
    """True inside a ``TorchDispatchMode`` (``FlopCounterMode``, fake or meta
    tensors, memory tracers): such tools know the standard aten ops, so they
    get those instead of the fused kernel (same FLOPs, counted)."""
    return torch._C._len_torch_dispatch_stack() > 0


def onednn_linear_available() -> bool:
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, '_linear_pointwise'))


def onednn_bf16_native() -> bool:
    """Whether oneDNN runs bf16 GEMMs natively on this CPU (AVX512-BF16,
    AMX-BF16, ...); elsewhere bf16 is emulated and autocast keeps its ops."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = onednn_linear_available()
#: bf16 autocast uses the fused kernel only where oneDNN has native bf16.
ONEDNN_BF16 = _ONEDNN and onednn_bf16_native()
_FULL = (torch.float32, torch.bfloat16)


def fused_dtype(x: Tensor, weight: Tensor) -> Optional[torch.dtype]:
    """The dtype in which :func:`linear` runs the fused oneDNN kernel for
    these operands, or None for the plain PyTorch ops.

    float32 for float32 operands; under CPU bf16 autocast bfloat16, the dtype
    autocast would run the GEMM in, so the fused kernel keeps what fp32
    inference has (bias and GELU in the GEMM's epilogue, instead of a bias
    broadcast before and a GELU pass after a bf16 GEMM). Under torch.compile,
    inductor fuses (and picks GEMM kernels) itself; traced/exported graphs
    (ONNX) need the portable ops; autograd needs the plain ops."""
    if not _ONEDNN or x.device.type != 'cpu' or capturing_graph() or dispatch_mode_active():
        return None
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return None
    if torch.is_autocast_enabled('cpu'):
        if (ONEDNN_BF16 and torch.get_autocast_dtype('cpu') == torch.bfloat16
                and x.dtype in _FULL and weight.dtype in _FULL):
            return torch.bfloat16
        return None
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return torch.float32
    return None


def operands_for(x: Tensor, *params: Tensor) -> tuple:
    """``params`` (a linear's weight first) in the dtype :func:`linear` runs
    them in for input ``x``: cast once before a loop over bands instead of in
    every call (unchanged in fp32 and for the plain ops)."""
    dtype = fused_dtype(x, params[0])
    return params if dtype is None else tuple(p.to(dtype) for p in params)


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    return fused_dtype(x, weight) is not None


def _fused_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], gelu: bool) -> Tensor:
    """oneDNN's linear with the bias (and GELU) in the GEMM's epilogue;
    operands of one dtype, output in it."""
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'gelu', [], 'none')
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [], '')


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
           activation: Optional[str] = None) -> Tensor:
    """``F.linear(x, weight, bias)`` followed by ``activation`` (None or 'gelu').

    Same results as the unfused ops up to float rounding (exact erf GELU;
    under bf16 autocast the GELU is applied before the output is rounded).
    """
    if activation not in (None, 'gelu'):
        raise ValueError(f"activation must be None or 'gelu', got {activation!r}")
    dtype = fused_dtype(x, weight)
    if dtype is not None:
        x, weight = x.to(dtype), weight.to(dtype)
        return _fused_linear(x, weight, None if bias is None else bias.to(dtype),
                             activation == 'gelu')
    y = F.linear(x, weight, bias)
    return F.gelu(y) if activation == 'gelu' else y

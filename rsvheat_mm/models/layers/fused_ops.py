"""Fused CPU inference kernels for the backbone's per-pixel linear layers.

In inference on CPU, ``F.linear`` is an MKL GEMM preceded by a full pass
that broadcasts the bias into the output, and the MLP's GELU is another pass
over the 4C-wide hidden activations -- a sizeable share of RS-vHeat's CPU
inference time on large maps (docs/benchmark.md). oneDNN's linear kernel
(the one PyTorch's own inductor/freezing path uses) applies the bias and an
exact (erf) GELU in the GEMM's epilogue. Training, autocast and other
devices keep the plain PyTorch ops: the fused kernel has no autograd
formula. So do traced graphs and code run under a dispatch mode (FLOP
counters, fake tensors), which know the standard ops.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['linear', 'onednn_linear_available', 'capturing_graph', 'dispatch_mode_active']


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


_ONEDNN = onednn_linear_available()


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    # Under torch.compile, inductor fuses (and picks GEMM kernels) itself;
    # traced/exported graphs (ONNX) need the portable ops.
    return (_ONEDNN and not capturing_graph() and not dispatch_mode_active()
            and x.device.type == 'cpu' and x.dtype == torch.float32
            and weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            and not torch.is_autocast_enabled('cpu'))


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
           activation: Optional[str] = None) -> Tensor:
    """``F.linear(x, weight, bias)`` followed by ``activation`` (None or 'gelu').

    Same results as the unfused ops up to float rounding (exact erf GELU).
    """
    if activation not in (None, 'gelu'):
        raise ValueError(f"activation must be None or 'gelu', got {activation!r}")
    if _use_onednn(x, weight):
        if activation == 'gelu':
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'gelu', [], 'none')
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [], '')
    y = F.linear(x, weight, bias)
    return F.gelu(y) if activation == 'gelu' else y

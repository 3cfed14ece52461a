"""ONNX export of the RS-vHeat backbone and of segmentation models, with an
ONNX Runtime check against PyTorch.

The heat conduction operator is ``IDCT(DCT(u) * exp(-K * lam))`` with the DCTs
as matrix products, so the whole backbone is MatMul/Mul/LayerNorm/Conv and
exports with the standard operator set. The export

* runs the model in deploy mode (:meth:`RSVHeat.switch_to_deploy`): the
  conductivity, and so the decay ``exp(-K * lam)``, becomes a constant of the
  graph -- no FVE/``to_k`` weights in the file;
* forces the dense-GEMM DCT (the pocketfft op, used by ``dct_impl='auto'``
  for long axes on CPUs, has no ONNX export) and runs the MLP in one piece
  (the row-chunked inference MLP would be unrolled into the graph);
* replaces ``nn.AdaptiveAvgPool2d`` (UperNet's pyramid pooling; ONNX only
  pools by a factor) by the same averaging written as two matrix products;
* is **static in shape**: the DCT bases and the decay are built for the
  traced feature sizes. Export one file per input size (tiles of a scene all
  have one size), as deploy engines do.

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is
used: the dynamo exporter needs ``onnxscript``, which the pinned set lacks.
Files are written to a temporary name next to the target and renamed.
"""
import copy
import os
import os.path as osp
import tempfile
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'ExportableAdaptiveAvgPool2d', 'replace_adaptive_pools', 'prepare_for_export',
    'BackboneExportWrapper', 'SegmentorExportWrapper', 'export_onnx', 'check_onnx',
    'export_backbone', 'export_segmentor', 'build_backbone_from_config'
]


def _pool_matrix(size: int, out: int) -> torch.Tensor:
    """``(out, size)`` averaging matrix of PyTorch's adaptive pooling: bin ``i``
    covers ``[floor(i * size / out), ceil((i + 1) * size / out))``."""
    mat = torch.zeros(out, size)
    for i in range(out):
        start = (i * size) // out
        end = -(-((i + 1) * size) // out)
        mat[i, start:end] = 1.0 / (end - start)
    return mat


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as ``P_h @ x @ P_w^T`` (exact, any sizes).

    ONNX has no adaptive pooling; exporters only handle output sizes that
    divide the input. For a static-shape graph the pooling is a fixed linear
    map per axis.
    """

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh = h if self.output_size[0] is None else self.output_size[0]
        ow = w if self.output_size[1] is None else self.output_size[1]
        ph = _pool_matrix(h, oh).to(x)
        pw = _pool_matrix(w, ow).to(x)
        return torch.matmul(torch.matmul(ph, x), pw.t())


def replace_adaptive_pools(module: nn.Module) -> int:
    """Replace every ``nn.AdaptiveAvgPool2d`` in ``module`` (in place) by
    :class:`ExportableAdaptiveAvgPool2d`; returns how many were replaced."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(module, name, ExportableAdaptiveAvgPool2d(child.output_size))
            count += 1
        else:
            count += replace_adaptive_pools(child)
    return count


def prepare_for_export(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` ready to trace: eval mode, RS-vHeat backbones
    in deploy mode with GEMM DCTs (tracing runs the MLPs unchunked), adaptive pools replaced,
    SyncBN reverted to BN."""
    from mmengine.model import revert_sync_batchnorm

    from rsvheat_mm.models.backbones import RSVHeat
    from rsvheat_mm.models.layers import HeatConduction2d
    model = revert_sync_batchnorm(copy.deepcopy(model)).cpu().eval()
    for m in model.modules():
        if isinstance(m, RSVHeat) and not m.deploy:
            m.switch_to_deploy()
    for m in model.modules():
        if isinstance(m, HeatConduction2d):
            m.dct_impl = 'matmul'
    replace_adaptive_pools(model)
    return model


class BackboneExportWrapper(nn.Module):
    """``x -> backbone(x, modality)``: the stage features as separate outputs."""

    def __init__(self, backbone: nn.Module, modality: Optional[str] = None):
        super().__init__()
        self.backbone = backbone
        self.modality = modality

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x, modality=self.modality))


def _channel_conversion(pre) -> bool:
    """Whether a data preprocessor swaps RGB/BGR: mmseg 1.2 calls the flag
    ``channel_conversion``, mmengine's ``ImgDataPreprocessor`` (and OneDL's
    mmseg built on it) ``_channel_conversion``."""
    return bool(getattr(pre, 'channel_conversion', getattr(pre, '_channel_conversion', False)))


class SegmentorExportWrapper(nn.Module):
    """An mmseg segmentor as ``image -> (logits, mask)``.

    The input is the image as the config's test pipeline hands it to the
    model -- e.g. BGR values in 0-255 for configs built on
    ``LoadImageFromFile`` -- as float32 ``(B, C, H, W)``; the channel swap
    and mean/std of the model's data preprocessor are part of the graph.
    Outputs: ``seg_logits`` ``(B, K, H, W)`` (resized to the input as mmseg
    does) and ``seg_mask`` ``(B, H, W)`` int64 (argmax; for one-channel
    heads the thresholded sigmoid). Whole-image inference: a ``slide``
    ``test_cfg`` is not part of the graph (tile outside).
    """

    def __init__(self, segmentor: nn.Module, with_preprocess: bool = True):
        super().__init__()
        self.segmentor = segmentor
        pre = segmentor.data_preprocessor
        self.swap_channels = bool(with_preprocess and _channel_conversion(pre))
        mean = getattr(pre, 'mean', None) if with_preprocess and \
            getattr(pre, '_enable_normalize', False) else None
        self.register_buffer('mean', None if mean is None else mean.detach().clone().float(),
                             persistent=False)
        self.register_buffer('std', None if mean is None else pre.std.detach().clone().float(),
                             persistent=False)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        x = img.float()
        if self.swap_channels and x.shape[1] == 3:
            x = x[:, [2, 1, 0]]
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(img)
        feats = self.segmentor.extract_feat(x)
        logits = self.segmentor.decode_head(feats)
        logits = F.interpolate(logits, size=tuple(img.shape[2:]), mode='bilinear',
                               align_corners=self.segmentor.align_corners)
        if logits.shape[1] == 1:
            thr = getattr(self.segmentor.decode_head, 'threshold', 0.5)
            return logits, (logits.sigmoid() > thr).long()[:, 0]
        return logits, logits.argmax(dim=1)


def export_onnx(module: nn.Module, inputs: Sequence[torch.Tensor], out_file: str,
                input_names: Sequence[str], output_names: Sequence[str],
                opset: int = 17) -> str:
    """Trace ``module`` on ``inputs`` and write ``out_file`` atomically."""
    import onnx
    out_file = os.fspath(out_file)
    directory = osp.dirname(osp.abspath(out_file))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(out_file)}.', suffix='.onnx',
                               dir=directory)
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(module, tuple(inputs), tmp, dynamo=False, opset_version=opset,
                              input_names=list(input_names),
                              output_names=list(output_names), do_constant_folding=True)
        onnx.checker.check_model(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_file)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return out_file


def check_onnx(onnx_file: str, module: nn.Module, inputs: Sequence[torch.Tensor],
               atol: float = 1e-4, rtol: float = 0.0) -> Dict[str, float]:
    """Run ``onnx_file`` with ONNX Runtime (CPU) and ``module`` with PyTorch on
    ``inputs``; raise if a float output differs by more than
    ``atol + rtol * |torch|`` (integer outputs must agree on at least 99.9 %
    of their elements: argmax ties may break differently).

    Returns:
        dict: Max absolute difference per output name.
    """
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    feeds = {i.name: t.detach().cpu().numpy() for i, t in zip(sess.get_inputs(), inputs)}
    ort_outs = sess.run(None, feeds)
    with torch.no_grad():
        ref = module(*inputs)
    ref = ref if isinstance(ref, (tuple, list)) else (ref, )
    if len(ref) != len(ort_outs):
        raise RuntimeError(f'{onnx_file}: {len(ort_outs)} outputs, PyTorch gives {len(ref)}')
    diffs = {}
    for meta, r, o in zip(sess.get_outputs(), ref, ort_outs):
        r = r.detach().cpu().numpy()
        if r.shape != o.shape:
            raise RuntimeError(f'{onnx_file}: output {meta.name} has shape {o.shape}, '
                               f'PyTorch {r.shape}')
        if np.issubdtype(r.dtype, np.integer):
            agree = float(np.mean(r == o))
            diffs[meta.name] = 1.0 - agree
            if agree < 0.999:
                raise AssertionError(f'{onnx_file}: output {meta.name} agrees with PyTorch on '
                                     f'{100 * agree:.3f} % of its elements only')
            continue
        diff = np.abs(r.astype(np.float64) - o.astype(np.float64))
        diffs[meta.name] = float(diff.max()) if diff.size else 0.0
        bound = atol + rtol * np.abs(r)
        if np.any(diff > bound):
            raise AssertionError(f'{onnx_file}: output {meta.name} differs from PyTorch by '
                                 f'{diffs[meta.name]:.3g} > atol {atol} (rtol {rtol})')
    return diffs


def export_backbone(backbone: nn.Module, out_file: str, input_shape: Sequence[int],
                    modality: Optional[str] = None, opset: int = 17,
                    verify: bool = True, atol: float = 1e-4,
                    seed: int = 0) -> Dict[str, object]:
    """Export an RS-vHeat backbone; optionally check it against PyTorch.

    Args:
        backbone: An :class:`~rsvheat_mm.models.RSVHeat` (any mode; a deploy
            copy is exported, ``backbone`` is left unchanged).
        out_file (str): ``.onnx`` target.
        input_shape: ``(B, C, H, W)`` of the (normalised) input.
        modality (str, optional): Stem to export (default: the backbone's
            rule, e.g. by band count).
        verify (bool): Compare ONNX Runtime with the *original* backbone on a
            random input. Defaults to True.
        atol (float): Tolerance of the check. Defaults to 1e-4.

    Returns:
        dict: ``file``, ``inputs``/``outputs`` (names and shapes) and
        ``max_abs_diff`` per output (with ``verify``).
    """
    if len(input_shape) != 4:
        raise ValueError(f'input_shape must be (B, C, H, W), got {tuple(input_shape)}')
    # (eval on the wrapper too: the exporter restores the wrapper's mode recursively)
    module = BackboneExportWrapper(prepare_for_export(backbone), modality).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=gen)
    with torch.no_grad():
        outs = module(x)
    names = [f'feat{i}' for i in range(len(outs))]
    export_onnx(module, [x], out_file, ['input'], names, opset)
    info = dict(file=osp.abspath(out_file), kind='backbone', modality=modality,
                inputs=[dict(name='input', shape=list(x.shape), dtype='float32')],
                outputs=[dict(name=n, shape=list(o.shape), stride=x.shape[-1] // o.shape[-1])
                         for n, o in zip(names, outs)])
    if verify:
        reference = BackboneExportWrapper(copy.deepcopy(backbone).cpu(), modality).eval()
        info['max_abs_diff'] = check_onnx(out_file, reference, [x], atol=atol)
    return info


def export_segmentor(segmentor: nn.Module, out_file: str, input_shape: Sequence[int],
                     opset: int = 17, verify: bool = True, atol: float = 1e-4,
                     classes: Optional[Sequence[str]] = None,
                     palette: Optional[Sequence] = None,
                     seed: int = 0) -> Dict[str, object]:
    """Export an mmseg segmentor (see :class:`SegmentorExportWrapper`).

    The check feeds an image-like random input (uniform 0-255) to ONNX
    Runtime and to the *original* model's own path (``data_preprocessor``
    normalisation + ``encode_decode``), so it covers the wrapper too.

    Returns:
        dict: ``file``, ``inputs``, ``outputs``, ``preprocess`` (channel swap,
        mean, std inside the graph), ``classes``/``palette`` and
        ``max_abs_diff`` (with ``verify``).
    """
    if len(input_shape) != 4:
        raise ValueError(f'input_shape must be (B, C, H, W), got {tuple(input_shape)}')
    if not hasattr(segmentor, 'decode_head') or not hasattr(segmentor, 'extract_feat'):
        raise TypeError(f'{type(segmentor).__name__} is not an mmseg segmentor')
    if type(segmentor).__name__ not in ('EncoderDecoder', 'RSVHeatMultiModalEncoderDecoder'):
        raise TypeError(f'{type(segmentor).__name__}: only single-input encoder-decoder '
                        'segmentors are exported (change detectors take two dates)')
    module = SegmentorExportWrapper(prepare_for_export(segmentor)).eval()
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand(*input_shape, generator=gen) * 255
    export_onnx(module, [img], out_file, ['image'], ['seg_logits', 'seg_mask'], opset)
    with torch.no_grad():
        logits, mask = module(img)
    info = dict(file=osp.abspath(out_file), kind='segmentor',
                inputs=[dict(name='image', shape=list(img.shape), dtype='float32')],
                outputs=[dict(name='seg_logits', shape=list(logits.shape), dtype='float32'),
                         dict(name='seg_mask', shape=list(mask.shape), dtype='int64')],
                preprocess=dict(swap_rgb_bgr=module.swap_channels,
                                mean=None if module.mean is None else
                                module.mean.flatten().tolist(),
                                std=None if module.std is None else
                                module.std.flatten().tolist()),
                classes=list(classes) if classes else None,
                palette=[list(map(int, c)) for c in palette] if palette else None)
    if verify:
        reference = _ReferenceSegmentor(copy.deepcopy(segmentor).cpu()).eval()
        info['max_abs_diff'] = check_onnx(out_file, reference, [img], atol=atol)
    return info


class _ReferenceSegmentor(nn.Module):
    """The segmentor's own test path on a raw image: its data preprocessor's
    swap + normalisation, then ``encode_decode`` (logits at the input size)."""

    def __init__(self, segmentor):
        super().__init__()
        from mmengine.model import revert_sync_batchnorm
        self.segmentor = revert_sync_batchnorm(segmentor)

    def forward(self, img):
        pre = self.segmentor.data_preprocessor
        x = img.float()
        if _channel_conversion(pre) and x.shape[1] == 3:
            x = x[:, [2, 1, 0]]
        if getattr(pre, '_enable_normalize', False):
            x = (x - pre.mean) / pre.std
        metas = [dict(img_shape=tuple(img.shape[2:]), ori_shape=tuple(img.shape[2:]),
                      pad_shape=tuple(img.shape[2:]), padding_size=[0, 0, 0, 0])
                 for _ in range(img.shape[0])]
        logits = self.segmentor.encode_decode(x, metas)
        if logits.shape[1] == 1:
            thr = getattr(self.segmentor.decode_head, 'threshold', 0.5)
            return logits, (logits.sigmoid() > thr).long()[:, 0]
        return logits, logits.argmax(dim=1)


def build_backbone_from_config(cfg, checkpoint: Optional[str] = None) -> nn.Module:
    """``cfg.model.backbone`` (any task's config, pretraining included) with the
    ``backbone.*`` weights of ``checkpoint`` (a downstream or pretraining
    checkpoint; deploy checkpoints are detected)."""
    from mmengine.runner.checkpoint import _load_checkpoint

    from rsvheat_mm.registry import MODELS
    bb_cfg = copy.deepcopy(cfg.model.get('backbone'))
    if bb_cfg is None:
        raise KeyError('the config has no model.backbone')
    state = None
    if checkpoint is not None:
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
        ckpt = ckpt.get('state_dict', ckpt)
        state = {k[len('backbone.'):]: v for k, v in ckpt.items() if k.startswith('backbone.')}
        if not state:
            raise KeyError(f'{checkpoint} holds no `backbone.*` weights')
        if any(k.endswith('.k_pre') for k in state):
            bb_cfg['deploy'] = True
    bb_cfg.pop('init_cfg', None)  # weights come from `checkpoint`, not a pretrained file
    bb_type = str(bb_cfg.get('type', '')).split('.')[-1]
    bb_cfg['type'] = bb_type
    backbone = MODELS.build(bb_cfg)
    if state is not None:
        backbone.load_state_dict(state, strict=True)
    else:
        backbone.init_weights()
    return backbone.eval()

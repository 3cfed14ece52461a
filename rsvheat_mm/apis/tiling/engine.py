"""Tiled inference on a scene: windows -> pipeline -> model -> blender/merger -> writer.

The three loops every task's tiled inference is made of:

* :func:`run_dense` (segmentation, change detection): window probabilities
  are blended (:class:`~.blend.DenseBlender`), turned into class indices
  patch by patch and streamed to a :class:`~.writer.MaskWriter`;
* :func:`run_detection` (horizontal and rotated detection): window boxes
  are shifted and merged with NMS (:class:`~.merge.DetectionMerger`);
* :func:`run_windows` (classification): one prediction per window.

Windows are read with a :class:`~.reader.SceneReader` and run in batches
through a :class:`~.pipeline.WindowPipeline`, in the order of a
:class:`~.plan.WindowPlan`.
"""
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..geo_io import NODATA_CLASS
from .blend import DenseBlender
from .merge import DetectionMerger
from .pipeline import WindowPipeline
from .plan import WindowPlan
from .reader import SceneReader
from .writer import MaskWriter

__all__ = ['dense_probabilities', 'labels_from_probs', 'run_dense', 'run_detection',
           'run_windows']


def dense_probabilities(sample) -> np.ndarray:
    """``(C, H, W)`` float32 class probabilities of an mmseg ``SegDataSample``.

    Softmax of the logits for multi-class heads; a one-channel (sigmoid)
    head's probability ``p`` (mmseg already applied the sigmoid) becomes
    ``(1 - p, p)``.
    """
    logits = sample.seg_logits.data.float()
    if logits.shape[0] == 1:
        return torch.cat([1 - logits, logits]).cpu().numpy()
    return logits.softmax(dim=0).cpu().numpy()


def labels_from_probs(probs: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
    """uint8 class indices of ``(C, h, w)`` probabilities: the argmax, or with
    ``threshold`` (binary maps) ``probs[-1] > threshold``, as mmseg decides for
    one-channel heads."""
    if threshold is not None:
        return (probs[-1] > threshold).astype(np.uint8)
    return probs.argmax(axis=0).astype(np.uint8)


def _count_nonfinite(prediction, core) -> int:
    """NaN/Inf pixels of a window inside its core (counted once per scene)."""
    if prediction.nonfinite is None:
        return 0
    x0, y0, _, _ = prediction.window
    cx0, cy0, cx1, cy1 = core
    return int(prediction.nonfinite[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].sum())


def run_dense(model, pipeline: WindowPipeline, reader: SceneReader, plan: WindowPlan,
              writer: MaskWriter, batch_size: int = 1, blend: str = 'gaussian',
              decide: Callable[[np.ndarray], np.ndarray] = labels_from_probs,
              collate_fn: Optional[Callable] = None, progress: bool = False,
              on_patch: Optional[Callable] = None) -> Dict[str, int]:
    """Class map of a scene, blended from overlapping windows and streamed to ``writer``.

    Args:
        model: An mmseg segmentor / change detector (``test_step`` returning
            ``SegDataSample`` s with ``seg_logits``).
        pipeline, reader, plan: See :class:`~.pipeline.WindowPipeline`,
            :class:`~.reader.SceneReader`, :class:`~.plan.WindowPlan`.
        writer (MaskWriter): Receives the uint8 class map patch by patch
            (nodata pixels: 255), inside its ``with`` block.
        batch_size (int): Windows per ``test_step``.
        blend (str): ``'gaussian'`` or ``'mean'`` (see :func:`~.blend.blend_weights`).
        decide (callable): ``(C, h, w)`` blended probabilities -> uint8 classes.
        collate_fn (callable, optional): Batch collation (default ``pseudo_collate``).
        progress (bool): Show a progress bar.
        on_patch (callable, optional): Called with every final
            :class:`~.blend.BlendedPatch` (e.g. to keep probabilities).

    Returns:
        dict: ``num_windows``, ``nodata_pixels``, ``nonfinite_pixels``.
    """
    blender = DenseBlender(plan, blend)
    cores = (core for _, core in plan.owned())
    nonfinite = 0
    with writer:
        for pred in pipeline.predict(model, reader, list(plan), batch_size, collate_fn,
                                     progress):
            nonfinite += _count_nonfinite(pred, next(cores))
            patch = blender.add(pred.window, dense_probabilities(pred.sample), pred.nodata)
            if on_patch is not None:
                on_patch(patch)
            labels = decide(patch.probs)
            labels[patch.nodata] = NODATA_CLASS
            writer.write(patch.y0, patch.x0, labels)
    return dict(num_windows=len(plan), nodata_pixels=int(writer.counts[NODATA_CLASS]),
                nonfinite_pixels=nonfinite)


def run_detection(model, pipeline: WindowPipeline, reader: SceneReader, plan: WindowPlan,
                  merger: DetectionMerger, batch_size: int = 1,
                  collate_fn: Optional[Callable] = None, progress: bool = False):
    """Detections of a scene from overlapping windows, merged by ``merger``.

    Returns:
        tuple: The merged ``DetDataSample`` (``metainfo``: ``ori_shape``,
        ``windows``, ``img_path``, ``geo``) and ``nonfinite_pixels``.
    """
    cores = (core for _, core in plan.owned())
    nonfinite = 0
    for pred in pipeline.predict(model, reader, list(plan), batch_size, collate_fn, progress):
        nonfinite += _count_nonfinite(pred, next(cores))
        merger.add(pred.window, pred.sample, pred.nodata)
    merged = merger.result()
    merged.set_metainfo(dict(img_path=reader.paths[0] if reader.paths else None,
                             geo=reader.geo))
    return merged, nonfinite


def run_windows(model, pipeline: WindowPipeline, reader: SceneReader, plan: WindowPlan,
                batch_size: int = 1, collate_fn: Optional[Callable] = None,
                progress: bool = False) -> Tuple[List, List[float], int]:
    """One prediction per window (e.g. a land-use grid of scene labels).

    Returns:
        tuple: The data samples, each window's nodata fraction and
        ``nonfinite_pixels``.
    """
    samples, fractions, nonfinite = [], [], 0
    cores = (core for _, core in plan.owned())
    for pred in pipeline.predict(model, reader, list(plan), batch_size, collate_fn, progress):
        nonfinite += _count_nonfinite(pred, next(cores))
        samples.append(pred.sample)
        fractions.append(0. if pred.nodata is None else float(pred.nodata.mean()))
    return samples, fractions, nonfinite

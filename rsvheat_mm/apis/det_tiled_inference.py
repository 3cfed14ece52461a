"""Huge-scene detection: tile, detect, merge with NMS (mmdet and mmrotate).

A remote-sensing scene (10k x 10k px and more) does not fit a detector at
its native resolution. :func:`inference_detector_tiled` cuts it into
overlapping windows (:func:`rsvheat_mm.utils.sliding_windows`), runs the
model's own test pipeline and ``test_step`` on batches of windows, shifts
every box into scene coordinates and removes the duplicates of the overlaps
with a class-wise NMS from mmcv (``nms`` for horizontal boxes,
``nms_rotated`` for mmrotate's ``(cx, cy, w, h, angle)`` boxes).

The module imports mmdet only when called, so ``import rsvheat_mm`` stays
toolbox-free.
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from rsvheat_mm.utils.tiling import Window, sliding_windows
from .scene import SceneReader, split_test_pipeline, window_results

__all__ = ['inference_detector_tiled', 'merge_tile_predictions', 'shift_boxes',
           'default_merge_iou', 'build_window_pipeline']


def build_window_pipeline(cfg):
    """``(loader_cfg, file_loader, pipeline)`` of a detection config: its test
    pipeline split into the image loader (built, for decoding scene files)
    and the transforms a window goes through (annotation loaders dropped)."""
    from mmengine.dataset import Compose
    from mmengine.registry import TRANSFORMS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loader_cfg, rest = split_test_pipeline(cfg)
    return loader_cfg, TRANSFORMS.build(loader_cfg), Compose(rest)


def _boxes(instances) -> torch.Tensor:
    bboxes = instances.bboxes
    return getattr(bboxes, 'tensor', bboxes)  # mmdet BaseBoxes or a Tensor


def shift_boxes(boxes: torch.Tensor, x: int, y: int) -> torch.Tensor:
    """Translate (N, 4) ``x1 y1 x2 y2``, (N, 5) ``cx cy w h a`` or (N, 8)
    quadrilateral boxes by ``(x, y)``."""
    boxes = boxes.clone()
    if boxes.shape[-1] == 4:
        boxes += boxes.new_tensor([x, y, x, y])
    elif boxes.shape[-1] == 5:
        boxes[:, :2] += boxes.new_tensor([x, y])
    elif boxes.shape[-1] == 8:
        boxes += boxes.new_tensor([x, y] * 4)
    else:
        raise ValueError(f'unsupported box shape {tuple(boxes.shape)}')
    return boxes


def merge_tile_predictions(results: Sequence, windows: Sequence[Window],
                           scene_shape: Tuple[int, int], iou_thr: float = 0.5,
                           score_thr: float = 0.0, max_per_img: int = -1):
    """Merge window predictions (``DetDataSample`` s) into one for the scene.

    Args:
        results: One ``DetDataSample`` per window, boxes in window pixels.
        windows: ``(x0, y0, x1, y1)`` of each window in the scene.
        scene_shape: ``(height, width)`` of the scene.
        iou_thr (float): IoU of the class-wise NMS across windows.
        score_thr (float): Drop predictions below this score first.
        max_per_img (int): Keep at most this many (highest scores); -1: all.

    Returns:
        DetDataSample: ``pred_instances`` (``bboxes`` Tensor, ``scores``,
        ``labels``) in scene coordinates, sorted by score.
    """
    from mmcv.ops import batched_nms
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    if len(results) != len(windows):
        raise ValueError(f'{len(results)} results for {len(windows)} windows')
    boxes, scores, labels = [], [], []
    for res, (x0, y0, _, _) in zip(results, windows):
        inst = res.pred_instances
        keep = inst.scores >= score_thr
        boxes.append(shift_boxes(_boxes(inst)[keep].float().cpu(), x0, y0))
        scores.append(inst.scores[keep].float().cpu())
        labels.append(inst.labels[keep].cpu())
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    if len(boxes):
        nms_type = {4: 'nms', 5: 'nms_rotated', 8: 'nms_quadri'}[boxes.shape[-1]]
        _, keep = batched_nms(boxes, scores, labels,
                              dict(type=nms_type, iou_threshold=iou_thr))
        if max_per_img > 0:
            keep = keep[:max_per_img]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    height, width = scene_shape
    merged = DetDataSample(metainfo=dict(ori_shape=(height, width), img_shape=(height, width),
                                         windows=[tuple(w) for w in windows]))
    merged.pred_instances = InstanceData(bboxes=boxes, scores=scores, labels=labels)
    return merged


def default_merge_iou(cfg, default: float = 0.5) -> float:
    """The IoU of the detector's own final NMS (``test_cfg.rcnn.nms`` or
    ``test_cfg.nms``): duplicates across windows are as close as duplicates
    within one."""
    test_cfg = cfg.model.get('test_cfg') or {}
    for stage in (test_cfg.get('rcnn') or {}, test_cfg):
        nms = stage.get('nms')
        if nms and 'iou_threshold' in nms:
            return float(nms['iou_threshold'])
    return default


def inference_detector_tiled(model, image: Union[str, np.ndarray],
                             tile: Union[int, Tuple[int, int]] = 1024,
                             overlap: Union[int, Tuple[int, int]] = 200,
                             batch_size: int = 1, iou_thr: Optional[float] = None,
                             score_thr: float = 0.0, max_per_img: int = -1,
                             raster_loader=None):
    """Detect objects on a scene of any size with a windowed detector.

    Args:
        model: A detector from ``mmdet.apis.init_detector`` (mmdet or
            mmrotate config; it carries ``model.cfg``).
        image (str | ndarray): Scene path (GeoTIFF and other rasters are
            read window by window, other images decoded once by the config's
            loader) or an array as that loader would produce it (BGR
            ``(H, W, 3)``; ``(H, W)`` for grayscale/SAR pipelines).
        tile (int | tuple): Window size (h, w) in scene pixels; the test
            pipeline may still resize each window (e.g. to the training scale).
        overlap (int | tuple): Minimum overlap of neighbouring windows; make it
            at least the size of the largest object so that every object lies
            whole in some window.
        batch_size (int): Windows per forward pass.
        iou_thr (float, optional): IoU of the merging NMS; default: the
            detector's own final NMS IoU (:func:`default_merge_iou`).
        score_thr (float): Drop predictions below this score before merging.
        max_per_img (int): Keep at most this many detections (-1: all).
        raster_loader (LoadGeoRasterFromFile, optional): Reads raster windows
            (bands, normalisation, nodata); default: derived from the
            config's loader (:func:`loader_for_raster`).

    Returns:
        DetDataSample: Predictions in full-scene coordinates
        (``pred_instances.bboxes``: (N, 4) ``x1 y1 x2 y2`` for mmdet, (N, 5)
        ``cx cy w h angle`` for mmrotate), with ``ori_shape`` the scene size,
        ``windows`` the tiles used, ``img_path`` and ``geo`` (the raster's
        georeferencing, None for other inputs).
    """
    from mmengine.dataset import pseudo_collate
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise ValueError('the model has no `cfg`; build it with mmdet.apis.init_detector '
                         'or RSVHeatInferencer')
    loader_cfg, file_loader, pipeline = build_window_pipeline(cfg)
    if raster_loader is None:
        from rsvheat_mm.datasets.transforms.geotiff import loader_for_raster
        raster_loader = loader_for_raster(loader_cfg)
    reader = SceneReader(image, raster_loader, file_loader)
    height, width = reader.height, reader.width
    windows = sliding_windows(height, width, tile, overlap)
    results: List = []
    for start in range(0, len(windows), batch_size):
        batch = [pipeline(window_results(reader.read(win)[0], win, reader.path, k))
                 for k, win in enumerate(windows[start:start + batch_size])]
        with torch.no_grad():
            results.extend(model.test_step(pseudo_collate(batch)))
    if iou_thr is None:
        iou_thr = default_merge_iou(cfg)
    merged = merge_tile_predictions(results, windows, (height, width), iou_thr,
                                    score_thr, max_per_img)
    merged.set_metainfo(dict(img_path=reader.path, geo=reader.geo))
    return merged

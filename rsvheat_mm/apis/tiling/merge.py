"""Merging window detections into scene detections: shift, drop nodata, NMS.

Every box of a window is shifted by the window's offset into scene pixels;
objects in the overlap of two windows are found twice, and a class-wise NMS
from mmcv (``nms`` for horizontal ``x1 y1 x2 y2`` boxes, ``nms_rotated`` for
mmrotate's ``cx cy w h angle``, ``nms_quadri`` for quadrilaterals) keeps the
better copy. Boxes centred on nodata pixels (outside the image footprint,
NaN areas) are dropped: the model saw filled values there, not the scene.
Memory grows with the number of detections, not with the scene size.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['shift_boxes', 'box_centres', 'default_merge_iou', 'DetectionMerger',
           'merge_window_detections']


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


def box_centres(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` centres of (N, 4), (N, 5) or (N, 8) boxes."""
    if boxes.shape[-1] == 4:
        return (boxes[:, :2] + boxes[:, 2:]) / 2
    if boxes.shape[-1] == 5:
        return boxes[:, :2]
    return boxes.reshape(-1, 4, 2).mean(dim=1)


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


class DetectionMerger:
    """Collect window detections in scene pixels, then merge them with NMS.

    Args:
        scene_shape (tuple): ``(height, width)`` of the scene.
        iou_thr (float): IoU of the class-wise NMS across windows.
        score_thr (float): Drop detections below this score when added.
        max_per_img (int): Keep at most this many (highest scores); -1: all.
    """

    def __init__(self, scene_shape: Tuple[int, int], iou_thr: float = 0.5,
                 score_thr: float = 0.0, max_per_img: int = -1) -> None:
        self.scene_shape = tuple(scene_shape)
        self.iou_thr = iou_thr
        self.score_thr = score_thr
        self.max_per_img = max_per_img
        self.windows: List[Tuple[int, int, int, int]] = []
        self.dropped_in_nodata = 0
        self._boxes, self._scores, self._labels = [], [], []

    def add(self, window, sample, nodata: Optional[np.ndarray] = None) -> None:
        """Add a window's ``DetDataSample`` (boxes in window pixels); boxes
        centred on ``nodata`` pixels of the window are dropped."""
        inst = sample.pred_instances
        boxes = _boxes(inst).float().cpu()
        scores, labels = inst.scores.float().cpu(), inst.labels.cpu()
        keep = scores >= self.score_thr
        if nodata is not None and nodata.any() and len(boxes):
            h, w = nodata.shape
            centre = box_centres(boxes).floor().long()
            cx, cy = centre[:, 0].clamp(0, w - 1), centre[:, 1].clamp(0, h - 1)
            inside = torch.from_numpy(np.ascontiguousarray(nodata))[cy, cx]
            self.dropped_in_nodata += int((inside & keep).sum())
            keep &= ~inside
        x0, y0 = int(window[0]), int(window[1])
        self.windows.append(tuple(int(v) for v in window))
        self._boxes.append(shift_boxes(boxes[keep], x0, y0))
        self._scores.append(scores[keep])
        self._labels.append(labels[keep])

    def result(self):
        """A ``DetDataSample`` with the merged ``pred_instances`` (``bboxes``
        Tensor in scene pixels, ``scores``, ``labels``; sorted by score),
        ``ori_shape`` the scene size and ``windows`` the windows added."""
        from mmcv.ops import batched_nms
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        if not self._boxes:
            raise ValueError('no window was added')
        boxes, scores = torch.cat(self._boxes), torch.cat(self._scores)
        labels = torch.cat(self._labels)
        if len(boxes):
            nms_type = {4: 'nms', 5: 'nms_rotated', 8: 'nms_quadri'}[boxes.shape[-1]]
            _, keep = batched_nms(boxes, scores, labels,
                                  dict(type=nms_type, iou_threshold=self.iou_thr))
            if self.max_per_img > 0:
                keep = keep[:self.max_per_img]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        height, width = self.scene_shape
        merged = DetDataSample(metainfo=dict(ori_shape=(height, width),
                                             img_shape=(height, width),
                                             windows=list(self.windows)))
        merged.pred_instances = InstanceData(bboxes=boxes, scores=scores, labels=labels)
        return merged


def merge_window_detections(results: Sequence, windows: Sequence, scene_shape: Tuple[int, int],
                            iou_thr: float = 0.5, score_thr: float = 0.0,
                            max_per_img: int = -1):
    """Merge one ``DetDataSample`` per window (boxes in window pixels) into
    one for the scene; see :class:`DetectionMerger`."""
    if len(results) != len(windows):
        raise ValueError(f'{len(results)} results for {len(windows)} windows')
    merger = DetectionMerger(scene_shape, iou_thr, score_thr, max_per_img)
    for res, win in zip(results, windows):
        merger.add(win, res)
    return merger.result()

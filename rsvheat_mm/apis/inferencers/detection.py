"""Horizontal (mmdet) and rotated (mmrotate) detection on images and scenes of any size.

Tiled scenes: window boxes are shifted into scene pixels and merged with
the detector's own NMS IoU (:class:`~rsvheat_mm.apis.tiling.DetectionMerger`);
boxes centred on nodata pixels (NaN areas included) are dropped. Records
hold the boxes in scene pixels; georeferenced inputs also get them as
GeoJSON polygons in the source CRS. :func:`inference_detector_tiled` is the
same on a bare model (e.g. from mmdet's ``init_detector``).
"""
import os.path as osp
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from ..geo_io import detections_to_geojson, is_georeferenced, write_json
from ..tiling import DetectionMerger, WindowPipeline, WindowPlan, default_merge_iou, run_detection
from ..tiling.merge import box_centres
from .base import BaseRSVHeatInferencer

__all__ = ['DetectionInferencer', 'inference_detector_tiled']


class DetectionInferencer(BaseRSVHeatInferencer):
    """Horizontal and rotated detection with any rsvheat_mm mmdet / mmrotate
    config (see :class:`~rsvheat_mm.apis.RSVHeatInferencer`)."""

    tasks = ('detection', 'rotated_detection')
    #: make it as large as the largest object, so that each lies whole in a window
    default_overlap = 200

    def _mask_nodata(self, pred, nodata):
        inst = pred.pred_instances
        if nodata is None or not nodata.any() or not len(inst):
            return pred
        boxes = inst.bboxes
        centre = box_centres(getattr(boxes, 'tensor', boxes).float()).floor().long().cpu()
        h, w = nodata.shape
        inside = torch.from_numpy(nodata)[centre[:, 1].clamp(0, h - 1),
                                          centre[:, 0].clamp(0, w - 1)]
        pred.pred_instances = inst[~inside.to(inst.scores.device)]
        return pred

    def _predict_tiled(self, reader, plan, info, batch_size, blend, pred_dir, keep):
        merger = DetectionMerger((reader.height, reader.width), default_merge_iou(self.cfg))
        merged, nonfinite = run_detection(self.model, self.window_pipeline, reader, plan,
                                          merger, batch_size, self.collate_fn,
                                          self.show_progress)
        info.update(nonfinite_pixels=nonfinite, dropped_in_nodata=merger.dropped_in_nodata)
        return merged

    def _draw(self, rgb, pred, info, draw_pred, score_thr, opacity, show, wait_time):
        scale = info.get('vis_scale', 1.)
        if scale < 1:  # boxes onto the preview
            from mmdet.structures import DetDataSample
            inst = pred.pred_instances
            boxes = getattr(inst.bboxes, 'tensor', inst.bboxes).clone()
            boxes[:, :4 if boxes.shape[-1] == 5 else None] *= scale  # not the angle
            scaled = DetDataSample(metainfo=dict(ori_shape=rgb.shape[:2]))
            scaled.pred_instances = inst.new(bboxes=boxes, scores=inst.scores,
                                             labels=inst.labels)
            pred = scaled
        self.visualizer.add_datasample(info['name'], rgb, pred, draw_gt=False,
                                       draw_pred=draw_pred, show=show, wait_time=wait_time,
                                       pred_score_thr=score_thr)
        return self.visualizer.get_image()

    def pred_to_dict(self, pred, info, score_thr: float = 0.3) -> dict:
        record = super().pred_to_dict(pred, info, score_thr)
        classes = self.dataset_meta.get('classes')
        inst = pred.pred_instances
        boxes = getattr(inst.bboxes, 'tensor', inst.bboxes).float().cpu().numpy()
        scores = inst.scores.float().cpu().numpy()
        keep = scores >= score_thr
        labels = inst.labels.cpu().numpy()[keep]
        record.update(
            box_type='rbox' if boxes.shape[-1] == 5 else 'hbox',
            bboxes=[[round(float(v), 2) for v in b] for b in boxes[keep]],
            scores=[round(float(v), 5) for v in scores[keep]],
            labels=[int(v) for v in labels],
            classes=[classes[int(v)] if classes and int(v) < len(classes) else str(int(v))
                     for v in labels],
            score_thr=score_thr)
        if info.get('dropped_in_nodata'):
            record['dropped_in_nodata'] = info['dropped_in_nodata']
        return record

    def _write_pred(self, record, info, pred_dir) -> Dict[str, str]:
        files = dict(json=osp.join(pred_dir, info['name'] + '.json'))
        geo = info.get('geo')
        json_record = {k: v for k, v in record.items() if k != 'files'}
        if is_georeferenced(geo):
            json_record.update(crs=geo.get('crs'), transform=list(geo['transform']))
            files['geojson'] = osp.join(pred_dir, info['name'] + '.geojson')
            boxes = np.asarray(record['bboxes'], dtype=np.float64).reshape(
                -1, 5 if record['box_type'] == 'rbox' else 4)
            write_json(files['geojson'], detections_to_geojson(
                boxes, record['scores'], record['labels'], self.dataset_meta.get('classes'),
                geo, properties=dict(source=info.get('path'))))
        write_json(files['json'], json_record)
        return files


@torch.no_grad()
def inference_detector_tiled(model, image,
                             tile: Union[int, Tuple[int, int]] = 1024,
                             overlap: Union[int, Tuple[int, int]] = 200,
                             batch_size: int = 1, iou_thr: Optional[float] = None,
                             score_thr: float = 0.0, max_per_img: int = -1,
                             raster_loader=None, progress: bool = False):
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
            detector's own final NMS IoU (:func:`~rsvheat_mm.apis.tiling.default_merge_iou`).
        score_thr (float): Drop predictions below this score before merging.
        max_per_img (int): Keep at most this many detections (-1: all).
        raster_loader (dict | LoadGeoRasterFromFile, optional): How raster
            windows are read (bands, normalisation, nodata).
        progress (bool): Show an mmengine progress bar.

    Returns:
        DetDataSample: Predictions in full-scene coordinates
        (``pred_instances.bboxes``: (N, 4) ``x1 y1 x2 y2`` for mmdet, (N, 5)
        ``cx cy w h angle`` for mmrotate), with ``ori_shape`` the scene size,
        ``windows`` the tiles used, ``img_path``, ``geo`` (the raster's
        georeferencing, None for other inputs), ``nonfinite_pixels`` and
        ``dropped_in_nodata`` (boxes centred on nodata pixels).
    """
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise ValueError('the model has no `cfg`; build it with mmdet.apis.init_detector '
                         'or RSVHeatInferencer')
    pipeline = WindowPipeline(cfg, raster_loader)
    reader = pipeline.reader(image)
    plan = WindowPlan(reader.height, reader.width, tile, overlap)
    merger = DetectionMerger((reader.height, reader.width),
                             default_merge_iou(cfg) if iou_thr is None else iou_thr,
                             score_thr, max_per_img)
    merged, nonfinite = run_detection(model, pipeline, reader, plan, merger, batch_size,
                                      progress=progress)
    merged.set_metainfo(dict(nonfinite_pixels=nonfinite,
                             dropped_in_nodata=merger.dropped_in_nodata))
    return merged

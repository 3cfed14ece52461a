"""Semantic segmentation: class maps of images and of scenes of any size.

Tiled scenes are blended from overlapping windows and streamed to a GeoTIFF
by the tiled-scene engine (:func:`~rsvheat_mm.apis.tiling.run_dense`); the
map keeps the source CRS and transform, ``255`` marks nodata (including
NaN/Inf pixels of float rasters) and the palette is its colour table.
:func:`inference_segmentor_tiled` is the same on a bare model (e.g. from
mmseg's ``init_model``).
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from rsvheat_mm.utils.fileio import atomic_write
from ..geo_io import NODATA_CLASS, colormap_from_palette, is_raster_path, write_geotiff
from ..tiling import MaskWriter, WindowPipeline, WindowPlan, labels_from_probs, run_dense
from ..tiling.writer import count_values
from .base import BaseRSVHeatInferencer

__all__ = ['SegmentationInferencer', 'inference_segmentor_tiled', 'dense_decision']


def dense_decision(model, threshold: Optional[float] = None):
    """``probs -> classes`` of a segmentor: the argmax, or for a one-channel
    (sigmoid) head ``p > threshold`` (default: the head's own ``threshold``,
    as mmseg decides on whole images)."""
    head = getattr(model, 'decode_head', None)
    if threshold is None and getattr(head, 'out_channels', None) == 1:
        threshold = getattr(head, 'threshold', None)
        threshold = 0.5 if threshold is None else threshold
    num_classes = getattr(head, 'num_classes', None)
    if num_classes is not None and num_classes >= NODATA_CLASS:
        raise ValueError(f'{num_classes} classes do not fit a uint8 map with {NODATA_CLASS} '
                         'as nodata')
    return lambda probs: labels_from_probs(probs, threshold)


def _seg_sample(mask: Optional[np.ndarray], shape: Tuple[int, int], **meta):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(ori_shape=shape, img_shape=shape, **meta))
    if mask is not None:
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(mask)[None])
    return sample


class SegmentationInferencer(BaseRSVHeatInferencer):
    """Semantic segmentation with any rsvheat_mm mmseg config (see
    :class:`~rsvheat_mm.apis.RSVHeatInferencer`)."""

    tasks = ('segmentation', )

    def _prepare_model_cfg(self, cfg) -> None:
        cfg.model.train_cfg = None  # test-time model (mmseg's init_model)

    def _mask_nodata(self, pred, nodata):
        if nodata is None or not nodata.any():
            return pred
        from mmengine.structures import PixelData
        seg = pred.pred_sem_seg.data
        if tuple(seg.shape[-2:]) != nodata.shape:
            return pred
        masked = seg.clone()  # the model's tensor stays as it returned it
        masked[:, torch.from_numpy(nodata)] = NODATA_CLASS
        pred.pred_sem_seg = PixelData(data=masked)
        return pred

    def _mask_file(self, pred_dir: str, info: dict) -> str:
        ext = '.tif' if info.get('path') and is_raster_path(info['path']) else '.png'
        return osp.join(pred_dir, info['name'] + ext)

    def _predict_tiled(self, reader, plan, info, batch_size, blend, pred_dir, keep):
        out_file = self._mask_file(pred_dir, info) if pred_dir else None
        writer = MaskWriter(reader.height, reader.width, out_file, reader.geo,
                            colormap_from_palette(self.dataset_meta.get('palette')),
                            keep=keep, preview_side=self.preview_side)
        stats = run_dense(self.model, self.window_pipeline, reader, plan, writer, batch_size,
                          blend, dense_decision(self.model), self.collate_fn,
                          self.show_progress)
        info.update(stats, written=out_file, class_counts=writer.counts,
                    mask_preview=writer.preview)
        return _seg_sample(writer.mask, (reader.height, reader.width))

    def _draw(self, rgb, pred, info, draw_pred, score_thr, opacity, show, wait_time):
        vis = self.visualizer
        vis.alpha = opacity
        if info.get('tiled'):
            pred = _seg_sample(info['mask_preview'], info['mask_preview'].shape)
        vis.add_datasample(info['name'], rgb, pred, draw_gt=False, draw_pred=draw_pred,
                           show=show, wait_time=wait_time, with_labels=False)
        return vis.get_image()

    def pred_to_dict(self, pred, info, score_thr: float = 0.3) -> dict:
        record = super().pred_to_dict(pred, info, score_thr)
        if 'pred_sem_seg' in pred:
            mask = pred.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8, copy=False)
            counts = count_values(mask)
        else:  # a tiled scene written to a file, not kept in memory
            mask, counts = None, info['class_counts']
        classes = self.dataset_meta.get('classes')
        record['sem_seg'] = mask
        record['class_pixels'] = {
            (classes[k] if classes and k < len(classes) else
             ('nodata' if k == NODATA_CLASS else str(k))): int(counts[k])
            for k in np.flatnonzero(counts)}
        return record

    def _write_pred(self, record, info, pred_dir) -> Dict[str, str]:
        out = self._mask_file(pred_dir, info)
        if info.get('written') != out:  # a tiled scene is written while it is predicted
            mask = record['sem_seg']
            if out.endswith('.tif'):
                write_geotiff(out, mask, info.get('geo'), nodata=NODATA_CLASS,
                              colormap=colormap_from_palette(self.dataset_meta.get('palette')))
            else:
                import cv2
                ok, buf = cv2.imencode(osp.splitext(out)[1], mask)
                if not ok:
                    raise RuntimeError(f'could not encode {out}')
                atomic_write(buf.tobytes(), out)
        return dict(mask=out)


@torch.no_grad()
def inference_segmentor_tiled(model,
                              image,
                              tile: Union[int, Tuple[int, int]] = 1024,
                              overlap: Union[int, Tuple[int, int]] = 128,
                              batch_size: int = 1,
                              blend: str = 'gaussian',
                              out_file: Optional[str] = None,
                              palette: Optional[Sequence] = None,
                              return_mask: bool = True,
                              raster_loader=None,
                              threshold: Optional[float] = None,
                              progress: bool = False) -> Dict[str, object]:
    """Class map of a scene of any size with a windowed segmentor or change detector.

    Args:
        model: An mmseg segmentor (or a bi-temporal change detector) with
            its config as ``model.cfg`` (e.g. from mmseg's ``init_model``).
        image: Scene path (GeoTIFF/raster: read per window; other images:
            decoded once), an array as the config's loader would produce it,
            or for change detection the two co-registered dates ``(a, b)``.
        tile (int | tuple): Window size (h, w). Defaults to 1024.
        overlap (int | tuple): Minimum window overlap. Defaults to 128.
        batch_size (int): Windows per ``test_step``. Defaults to 1.
        blend (str): ``'gaussian'`` (default) or ``'mean'``.
        out_file (str, optional): Write the class map here, atomically:
            ``.tif`` strip by strip with the source georeferencing, other
            extensions through OpenCV.
        palette (Sequence, optional): Colour table of the ``.tif`` output.
        return_mask (bool): Keep the full class map in memory and return it
            (False for scenes only written to ``out_file``). Defaults to True.
        raster_loader (dict | LoadGeoRasterFromFile, optional): How raster
            windows are read (overrides of the raster equivalent of the
            config's loader, or a built loader).
        threshold (float, optional): For one-channel heads, and for a
            change probability threshold: ``p > threshold`` is class 1.
            Default: the argmax (the head's threshold for one channel).
        progress (bool): Show an mmengine progress bar.

    Returns:
        dict: ``mask`` ((H, W) uint8 class indices, 255 = nodata; None with
        ``return_mask=False``), ``num_windows``, ``geo`` (georeferencing of
        a raster input, else None), ``nodata_pixels``, ``nonfinite_pixels``
        (NaN/Inf pixels treated as nodata), ``out_file``.
    """
    if not return_mask and not out_file:
        raise ValueError('nothing to do: return_mask=False and no out_file')
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise ValueError('the model has no `cfg`; build it with RSVHeatInferencer or '
                         'mmseg.apis.init_model')
    decide = dense_decision(model, threshold)
    pipeline = WindowPipeline(cfg, raster_loader)
    reader = pipeline.reader(image)
    plan = WindowPlan(reader.height, reader.width, tile, overlap)
    writer = MaskWriter(reader.height, reader.width, out_file, reader.geo,
                        colormap_from_palette(palette), keep=return_mask)
    stats = run_dense(model, pipeline, reader, plan, writer, batch_size, blend, decide,
                      progress=progress)
    return dict(mask=writer.mask if return_mask else None, geo=reader.geo,
                out_file=osp.abspath(out_file) if out_file else None, **stats)

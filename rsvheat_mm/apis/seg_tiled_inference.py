"""Huge-scene semantic segmentation: windows, blended class probabilities, a GeoTIFF.

A scene of any size (a GeoTIFF tens of thousands of pixels a side) is cut
into overlapping windows (:func:`rsvheat_mm.utils.sliding_windows`); each
batch of windows goes through the config's test pipeline (minus the file
loader) and ``model.test_step`` -- so the model's ``test_cfg`` (e.g. a
sliding window inside each tile) applies as in validation. Class
probabilities of overlapping windows are averaged with a Gaussian (or flat)
weight, and the scene is processed strip by strip: only one row of windows is
held as floats, and a ``.tif`` output is written strip by strip as well
(class indices, ``255`` = nodata, the dataset palette as colour table, the
source CRS and transform kept). Rasters are read window by window with
rasterio, so neither the scene nor the mask need to fit in memory.

Imports mmseg/mmcv transforms only through the model's config at call time.
"""
import contextlib
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.dataset import pseudo_collate

from rsvheat_mm.datasets.transforms.geotiff import loader_for_raster
from rsvheat_mm.utils.tiling import sliding_windows
from .geo_io import NODATA_CLASS, GeoTIFFStripWriter, colormap_from_palette
from .scene import (SceneReader, blend_weights, group_rows, split_test_pipeline,
                    window_results)

__all__ = ['inference_segmentor_tiled', 'seg_probabilities']


def seg_probabilities(sample) -> torch.Tensor:
    """``(C, H, W)`` class probabilities of an mmseg ``SegDataSample``.

    Softmax of the logits for multi-class heads; a one-channel (sigmoid)
    head's probability ``p`` (mmseg already applied the sigmoid) becomes
    ``(1 - p, p)``.
    """
    logits = sample.seg_logits.data.float()
    if logits.shape[0] == 1:
        return torch.cat([1 - logits, logits])
    return logits.softmax(dim=0)


def _build_pipeline(cfg):
    from mmcv.transforms import Compose
    from mmengine.registry import TRANSFORMS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    loader_cfg, rest = split_test_pipeline(cfg)
    return loader_cfg, TRANSFORMS.build(loader_cfg), Compose(rest)


@torch.no_grad()
def inference_segmentor_tiled(model,
                              image: Union[str, np.ndarray],
                              tile: Union[int, Tuple[int, int]] = 1024,
                              overlap: Union[int, Tuple[int, int]] = 128,
                              batch_size: int = 1,
                              blend: str = 'gaussian',
                              out_file: Optional[str] = None,
                              palette: Optional[Sequence] = None,
                              return_mask: bool = True,
                              raster_loader=None,
                              progress: bool = False) -> Dict[str, object]:
    """Class map of a scene of any size with a windowed segmentor.

    Args:
        model: An mmseg segmentor with its config as ``model.cfg`` (e.g. from
            :class:`~rsvheat_mm.apis.RSVHeatInferencer` or mmseg's
            ``init_model``).
        image (str | ndarray): Scene path (GeoTIFF/raster: read per window;
            other images: decoded once) or an array as the config's loader
            would produce it.
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
        raster_loader (LoadGeoRasterFromFile, optional): How to read raster
            windows (bands, normalisation, nodata); default: the raster
            equivalent of the config's loader (:func:`loader_for_raster`).
        progress (bool): Show an mmengine progress bar.

    Returns:
        dict: ``mask`` ((H, W) uint8 class indices, 255 = nodata; None with
        ``return_mask=False``), ``num_windows``, ``geo`` (georeferencing of
        a raster input, else None), ``nodata_pixels``.
    """
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if not return_mask and not out_file:
        raise ValueError('nothing to do: return_mask=False and no out_file')
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise ValueError('the model has no `cfg`; build it with RSVHeatInferencer or '
                         'mmseg.apis.init_model')
    num_classes = getattr(model.decode_head, 'num_classes', None)
    if num_classes is not None and num_classes >= NODATA_CLASS:
        raise ValueError(f'{num_classes} classes do not fit a uint8 map with {NODATA_CLASS} '
                         'as nodata')
    loader_cfg, file_loader, pipeline = _build_pipeline(cfg)
    if raster_loader is None:
        raster_loader = loader_for_raster(loader_cfg)
    reader = SceneReader(image, raster_loader, file_loader)
    height, width = reader.height, reader.width
    windows = sliding_windows(height, width, tile, overlap)
    rows = group_rows(windows)
    weights_cache = {}

    writer = None
    if out_file and out_file.lower().endswith(('.tif', '.tiff')):
        writer = GeoTIFFStripWriter(out_file, height, width, 1, 'uint8', reader.geo,
                                    nodata=NODATA_CLASS,
                                    colormap=colormap_from_palette(palette))
    keep_full = return_mask or (out_file is not None and writer is None)
    mask = np.full((height, width), NODATA_CLASS, np.uint8) if keep_full else None
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(windows))

    top = 0
    # Weighted class-probability sums over rows [top, top + len): (C, rows, W).
    # Their argmax is that of the weighted mean (the weight sum is per pixel).
    acc = None
    nodata = np.zeros((0, width), bool)
    nodata_pixels = 0
    with contextlib.ExitStack() as stack:
        if writer is not None:
            stack.enter_context(writer)
        for r, (y0, row) in enumerate(rows):
            y1 = max(w[3] for w in row)
            for i in range(0, len(row), batch_size):
                batch = row[i:i + batch_size]
                data, masks = [], []
                for k, win in enumerate(batch):
                    img, nd = reader.read(win)
                    data.append(pipeline(window_results(img, win, reader.path, k)))
                    masks.append(nd)
                samples = model.test_step(pseudo_collate(data))
                for (x0, wy0, x1, wy1), sample, nd in zip(batch, samples, masks):
                    prob = seg_probabilities(sample).cpu().numpy()
                    if prob.shape[1:] != (wy1 - wy0, x1 - x0):
                        raise RuntimeError(f'the model returned a {prob.shape[1:]} map for a '
                                           f'{(wy1 - wy0, x1 - x0)} window')
                    if acc is None:
                        acc = np.zeros((prob.shape[0], 0, width), np.float32)
                    need = y1 - top - acc.shape[1]
                    if need > 0:
                        acc = np.concatenate(
                            [acc, np.zeros((acc.shape[0], need, width), np.float32)], axis=1)
                        nodata = np.concatenate([nodata, np.zeros((need, width), bool)])
                    key = prob.shape[1:]
                    if key not in weights_cache:
                        weights_cache[key] = blend_weights(*key, blend)
                    weight = weights_cache[key]
                    acc[:, wy0 - top:wy1 - top, x0:x1] += prob * weight
                    if nd is not None:
                        nodata[wy0 - top:wy1 - top, x0:x1] |= nd
                    if bar is not None:
                        bar.update()
            # Rows above the next window row receive no more contributions.
            done = (rows[r + 1][0] if r + 1 < len(rows) else height) - top
            labels = acc[:, :done].argmax(axis=0).astype(np.uint8)
            labels[nodata[:done]] = NODATA_CLASS
            nodata_pixels += int(nodata[:done].sum())
            if writer is not None:
                writer.write(labels, top)
            if mask is not None:
                mask[top:top + done] = labels
            acc, nodata = acc[:, done:], nodata[done:]
            top += done
    if writer is None and out_file:
        import mmcv
        if not mmcv.imwrite(mask, out_file):  # mmengine's atomic local backend
            raise ValueError(f'could not encode {out_file} (unknown image extension?)')
    return dict(mask=mask if return_mask else None, num_windows=len(windows),
                geo=reader.geo, nodata_pixels=nodata_pixels,
                out_file=osp.abspath(out_file) if out_file else None)

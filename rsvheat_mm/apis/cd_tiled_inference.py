"""Huge-scene change detection: tile a co-registered pair, predict, blend, write a mask.

A pair of large co-registered scenes (tens of thousands of pixels a side)
is cut into overlapping windows (:func:`rsvheat_mm.utils.sliding_windows`);
each batch of windows runs through the config's own test pipeline (minus the
file loaders) and ``model.test_step`` -- so the model's ``test_cfg`` (e.g. a
256 px sliding window inside each tile) applies exactly as in validation.
The change probabilities of overlapping windows are averaged (optionally
with a Gaussian weight that trusts window centres more), and the scene is
processed strip by strip: only one row of windows is held in float, the
output mask takes one byte per pixel.

GeoTIFF (and other GDAL rasters) are read window by window with rasterio,
and a ``.tif`` output keeps date A's georeferencing; other image files are
read with mmcv. Outputs are written atomically. The module imports mmseg only
when called, so ``import rsvheat_mm`` stays toolbox-free.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from rsvheat_mm.apis.scene import blend_weights
from rsvheat_mm.utils.fileio import atomic_write
from rsvheat_mm.utils.tiling import sliding_windows

_RASTER_EXTS = ('.tif', '.tiff', '.vrt', '.img', '.jp2')


def _short(type_name) -> str:
    return type_name.split('.')[-1] if isinstance(type_name, str) else type_name.__name__


def init_change_detector(config, checkpoint: Optional[str] = None, device: str = 'cpu',
                         cfg_options: Optional[dict] = None):
    """Build a change detector (mmseg's ``init_model``) from a config file or Config."""
    import rsvheat_mm  # noqa: F401  (registration, safe checkpoint loading)
    from mmseg.apis import init_model
    model = init_model(config, checkpoint, device=device, cfg_options=cfg_options)
    if not hasattr(model, 'fusion_neck'):
        raise TypeError(f'{type(model).__name__} is not a bi-temporal change detector '
                        '(expected e.g. CDSiameseEncoderDecoder)')
    return model


def window_pipeline_cfg(cfg) -> Tuple[list, dict]:
    """The config's test pipeline for in-memory windows.

    Returns:
        tuple: The transforms after the loaders (``Load*`` steps dropped: the
        pair comes from memory, there is no label) and the image loader's
        config (how to decode the scenes).
    """
    test_cfg = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if test_cfg is None:
        raise KeyError('the config has no test_dataloader / val_dataloader to take the '
                       'test pipeline from')
    pipeline = copy.deepcopy(list(test_cfg['dataset']['pipeline']))
    loaders = [t for t in pipeline if _short(t['type']).startswith('Load')]
    image_loaders = [t for t in loaders if 'Label' not in _short(t['type'])
                     and 'Annotation' not in _short(t['type'])]
    if not image_loaders or _short(image_loaders[0]['type']) != 'LoadBitemporalImages':
        raise ValueError('the test pipeline must load pairs with LoadBitemporalImages, got '
                         f'{[t["type"] for t in loaders]}')
    rest = [t for t in pipeline if not _short(t['type']).startswith('Load')]
    return rest, dict(image_loaders[0])


class PairReader:
    """Reads windows of two co-registered images as one ``(h, w, 2C)`` stack.

    Rasters (GeoTIFF, ...) are read per window with rasterio (bands in file
    order, the first three reversed to BGR for ``color_type='color'`` as
    OpenCV would), other files are decoded once with mmcv.
    """

    def __init__(self, path_a: str, path_b: str, color_type: str = 'color',
                 imdecode_backend: str = 'cv2'):
        self.paths = (path_a, path_b)
        self.color_type = color_type
        self.sources, self.profile = [], None
        shapes = []
        for path in self.paths:
            if not osp.isfile(path):
                raise FileNotFoundError(f'change-detection image not found: {path}')
            if path.lower().endswith(_RASTER_EXTS):
                import rasterio
                src = rasterio.open(path)
                if self.profile is None:
                    self.profile = src.profile
                self.sources.append(src)
                bands = self._raster_bands(src.count, path)
                shapes.append((src.height, src.width, len(bands)))
            else:
                import mmcv
                img = mmcv.imread(path, flag=color_type, backend=imdecode_backend)
                if img is None:
                    raise ValueError(f'cannot decode image {path}')
                img = img[..., None] if img.ndim == 2 else img
                self.sources.append(img)
                shapes.append(img.shape)
        if shapes[0] != shapes[1]:
            raise ValueError(f'the two dates must be co-registered images of the same size '
                             f'and bands: {path_a} is {shapes[0]} (h, w, bands), '
                             f'{path_b} is {shapes[1]}')
        self.height, self.width, self.bands = shapes[0]

    def _raster_bands(self, count: int, path: str) -> List[int]:
        if self.color_type == 'color':
            if count < 3:
                raise ValueError(f'{path} has {count} band(s); color_type="color" needs 3')
            return [3, 2, 1]  # RGB in the file -> BGR, as cv2 decodes
        if self.color_type == 'grayscale':
            if count != 1:
                raise ValueError(f'{path} has {count} bands; color_type="grayscale" needs 1')
            return [1]
        return list(range(1, count + 1))

    def read(self, window: Tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = window
        dates = []
        for src, path in zip(self.sources, self.paths):
            if isinstance(src, np.ndarray):
                dates.append(src[y0:y1, x0:x1])
            else:
                from rasterio.windows import Window
                arr = src.read(self._raster_bands(src.count, path),
                               window=Window(x0, y0, x1 - x0, y1 - y0))
                dates.append(arr.transpose(1, 2, 0))
        return np.concatenate(dates, axis=2)

    def close(self):
        for src in self.sources:
            if not isinstance(src, np.ndarray):
                src.close()


def _geotiff_bytes(array: np.ndarray, profile: Optional[dict]) -> bytes:
    """Encode a uint8 map as a GeoTIFF (in memory) with ``profile``'s georeferencing."""
    from rasterio.io import MemoryFile
    out_profile = dict(driver='GTiff', height=array.shape[0], width=array.shape[1], count=1,
                       dtype='uint8', compress='deflate', tiled=True, blockxsize=256,
                       blockysize=256)
    if profile is not None:
        for key in ('crs', 'transform'):
            if profile.get(key) is not None:
                out_profile[key] = profile[key]
    with MemoryFile() as mem:
        with mem.open(**out_profile) as dst:
            dst.write(array, 1)
        return mem.read()


def write_mask(path: str, array: np.ndarray, profile: Optional[dict] = None) -> None:
    """Write a uint8 map atomically: GeoTIFF (with ``profile``'s georeferencing) for
    ``.tif``/``.tiff``, else any format OpenCV encodes (through mmengine's atomic fileio)."""
    if path.lower().endswith(('.tif', '.tiff')):
        atomic_write(_geotiff_bytes(array, profile), path)
    else:
        import mmcv
        if not mmcv.imwrite(array, path):
            raise ValueError(f'could not encode {path} (unknown image extension?)')


@torch.no_grad()
def _predict_windows(model, pipeline, crops: Sequence[np.ndarray], windows, paths,
                     change_index: int) -> List[np.ndarray]:
    from mmengine.dataset import pseudo_collate
    data = []
    for crop, win in zip(crops, windows):
        h, w = crop.shape[:2]
        results = dict(img=np.ascontiguousarray(crop), img_shape=(h, w), ori_shape=(h, w),
                       date_channels=crop.shape[2] // 2, img_path=paths[0],
                       img_path2=paths[1], window=win, seg_fields=[])
        data.append(pipeline(results))
    samples = model.test_step(pseudo_collate(data))
    probs = []
    for sample in samples:
        logits = sample.seg_logits.data.float()
        if logits.shape[0] == 1:  # sigmoid head: postprocess already applied it
            prob = logits[0]
        else:
            prob = logits.softmax(dim=0)[change_index]
        probs.append(prob.cpu().numpy())
    return probs


def inference_change_pair_tiled(model,
                                img_a: str,
                                img_b: str,
                                tile: Union[int, Tuple[int, int]] = 1024,
                                overlap: Union[int, Tuple[int, int]] = 128,
                                batch_size: int = 1,
                                threshold: float = 0.5,
                                blend: str = 'gaussian',
                                change_index: int = 1,
                                out_file: Optional[str] = None,
                                prob_file: Optional[str] = None,
                                progress: bool = False) -> Dict[str, object]:
    """Change mask of a co-registered pair of any size.

    Args:
        model: A change detector from :func:`init_change_detector` (its
            ``cfg`` provides the test pipeline).
        img_a (str): Date-A scene (image file or GeoTIFF).
        img_b (str): Date-B scene, same size and bands.
        tile (int | tuple): Window size (h, w). Defaults to 1024.
        overlap (int | tuple): Minimum window overlap. Defaults to 128.
        batch_size (int): Windows per ``test_step``. Defaults to 1.
        threshold (float): Change probability above which a pixel is changed.
        blend (str): ``'gaussian'`` (default) or ``'mean'`` weighting of
            overlapping windows.
        change_index (int): Class index of "changed" for softmax heads.
        out_file (str, optional): Write the mask (0/255) here; ``.tif`` keeps
            date A's georeferencing.
        prob_file (str, optional): Write the probability (0-255) here.
        progress (bool): Show an mmengine progress bar.

    Returns:
        dict: ``mask`` ((H, W) uint8, 1 = changed), ``prob`` ((H, W) uint8
        probability x 255, only with ``prob_file``), ``num_windows``.
    """
    from mmcv.transforms import Compose
    if not 0 < threshold < 1:
        raise ValueError(f'threshold must be in (0, 1), got {threshold}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise ValueError('the model has no `cfg`; build it with init_change_detector')
    transforms, loader = window_pipeline_cfg(cfg)
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    pipeline = Compose(transforms)
    reader = PairReader(img_a, img_b, loader.get('color_type', 'color'),
                        loader.get('imdecode_backend', 'cv2'))
    height, width = reader.height, reader.width
    windows = sliding_windows(height, width, tile, overlap)
    rows: Dict[int, list] = {}
    for win in windows:
        rows.setdefault(win[1], []).append(win)
    row_starts = sorted(rows)

    mask = np.zeros((height, width), np.uint8)
    prob_out = np.zeros((height, width), np.uint8) if prob_file else None
    # Float accumulators cover only the current strip of rows [top, top + len).
    top = 0
    acc = np.zeros((0, width), np.float32)
    wsum = np.zeros((0, width), np.float32)
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(windows))
    try:
        for r, y0 in enumerate(row_starts):
            row = rows[y0]
            y1 = max(w[3] for w in row)
            if y1 - top > acc.shape[0]:
                extra = y1 - top - acc.shape[0]
                acc = np.concatenate([acc, np.zeros((extra, width), np.float32)])
                wsum = np.concatenate([wsum, np.zeros((extra, width), np.float32)])
            for i in range(0, len(row), batch_size):
                batch = row[i:i + batch_size]
                crops = [reader.read(w) for w in batch]
                probs = _predict_windows(model, pipeline, crops, batch, reader.paths,
                                         change_index)
                for (x0, wy0, x1, wy1), prob in zip(batch, probs):
                    if prob.shape != (wy1 - wy0, x1 - x0):
                        raise RuntimeError(f'the model returned a {prob.shape} map for a '
                                           f'{(wy1 - wy0, x1 - x0)} window')
                    weight = blend_weights(*prob.shape, blend)
                    acc[wy0 - top:wy1 - top, x0:x1] += prob * weight
                    wsum[wy0 - top:wy1 - top, x0:x1] += weight
                    if bar is not None:
                        bar.update()
            # Rows above the next window row receive no more contributions.
            done = (row_starts[r + 1] if r + 1 < len(row_starts) else height) - top
            prob = acc[:done] / wsum[:done]
            mask[top:top + done] = prob > threshold
            if prob_out is not None:
                prob_out[top:top + done] = np.rint(prob * 255).astype(np.uint8)
            acc, wsum, top = acc[done:], wsum[done:], top + done
    finally:
        reader.close()
    if out_file:
        write_mask(out_file, mask * 255, reader.profile)
    if prob_file:
        write_mask(prob_file, prob_out, reader.profile)
    out = dict(mask=mask, num_windows=len(windows))
    if prob_out is not None:
        out['prob'] = prob_out
    return out

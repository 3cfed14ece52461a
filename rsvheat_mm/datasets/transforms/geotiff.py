"""Loading GeoTIFF / multiband rasters into the pipelines of all four toolboxes.

Remote-sensing scenes come as GeoTIFFs (or other GDAL rasters) with any
number of bands, 8/16-bit integer or float samples, a *nodata* value or mask
and a georeferencing (CRS + affine transform). OpenCV, which the toolboxes'
``LoadImageFromFile`` uses, keeps at most four bands and silently rescales
16-bit data to 8 bits for ``color_type='color'``. The transforms here read
rasters with rasterio (GDAL) instead:

* :class:`LoadGeoRasterFromFile` -- ``img_path`` (optionally a ``window``
  of it) as ``(H, W, bands)``: band selection, OpenCV-compatible
  ``color_type`` (``'color'`` = RGB bands as BGR), dtype, per-band
  normalisation (fixed range, mean/std or percentile stretch) and nodata
  handling; the georeferencing of the (windowed) image goes to
  ``results['geo']``.
* :class:`LoadGeoRasterPair` -- a co-registered bi-temporal pair
  (``img_path`` + ``img_path2``) stacked as ``(H, W, 2 * bands)`` for the
  change-detection pipelines (see ``transforms/bitemporal.py``).
* :class:`GeoRasterNodataToIgnore` -- nodata pixels become the ignore
  index of the segmentation / change label (place it right after the
  annotation loader, before any geometric transform).
* :class:`CheckFiniteImage` -- refuses float images with NaN/Inf pixels,
  naming the file, for pipelines that load them with the toolboxes' own
  loaders (the raster loaders above check by themselves).

The output is a plain ``results['img']`` array, so every later transform and
``Pack*Inputs`` of mmpretrain, mmseg, mmdet and mmrotate works unchanged.
Toolbox-free (torch/mmcv/numpy only); rasterio is imported on first use.
"""
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from rsvheat_mm.registry import TRANSFORMS

__all__ = [
    'LoadGeoRasterFromFile', 'LoadGeoRasterPair', 'GeoRasterNodataToIgnore', 'CheckFiniteImage',
    'read_geo_raster', 'normalize_bands', 'nonfinite_pixels', 'RASTER_SUFFIXES'
]

#: Extensions read through rasterio (GDAL) by default.
RASTER_SUFFIXES = ('.tif', '.tiff', '.vrt', '.img', '.jp2', '.ntf', '.hdr', '.dat')

_COLOR_TYPES = ('unchanged', 'color', 'grayscale')
# Loaders that decode with OpenCV (mmcv's, re-registered by the toolboxes).
_OPENCV_LOADERS = ('LoadImageFromFile', 'InferencerLoader', 'LoadBitemporalImages')
_NORM_TYPES = ('range', 'meanstd', 'percentile')


def _rasterio():
    try:
        import rasterio
    except ImportError as e:  # pragma: no cover - rasterio is in requirements/optional.txt
        raise ImportError('GeoTIFF / raster loading needs rasterio '
                          '(requirements/optional.txt): pip install rasterio') from e
    return rasterio


def _open(path: str, backend_args: Optional[dict]):
    """A rasterio dataset for a local path, or for bytes from an mmengine backend."""
    rasterio = _rasterio()
    if backend_args is None and osp.isfile(path):
        return rasterio.open(path)
    if backend_args is None and '://' not in path:
        raise FileNotFoundError(f'raster not found: {path}')
    import mmengine.fileio as fileio
    from rasterio.io import MemoryFile
    mem = MemoryFile(fileio.get(path, backend_args=backend_args))
    return mem.open()


def _per_band(value, n: int, what: str, path: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        return np.repeat(arr, n)
    if arr.size != n:
        raise ValueError(f'{path}: norm.{what} has {arr.size} values for an image of {n} '
                         'band(s); give one value, or one per loaded band')
    return arr


def normalize_bands(img: np.ndarray, norm: dict, valid: Optional[np.ndarray] = None,
                    path: str = '<array>') -> np.ndarray:
    """Per-band normalisation of an ``(H, W, C)`` array to float32.

    ``norm`` is one of

    * ``dict(type='range', min=..., max=..., out_range=(0, 255), clip=True)``:
      linear map of ``[min, max]`` (per band or one value) to ``out_range``
      -- e.g. 12-bit sensors stored in uint16 to the 0-255 range the
      ImageNet statistics of a data preprocessor expect;
    * ``dict(type='meanstd', mean=..., std=...)``: ``(x - mean) / std``;
    * ``dict(type='percentile', low=2, high=98, out_range=(0, 255),
      clip=True)``: the per-image ``low``/``high`` percentiles of each band
      (over valid pixels) stretched to ``out_range``. Convenient for single
      images; for tiled scenes prefer a fixed ``range`` (statistics of
      each window differ, which shows as seams).

    Args:
        img (ndarray): ``(H, W, C)``.
        norm (dict): See above.
        valid (ndarray, optional): ``(H, W)`` bool, pixels used for the
            percentile statistics (nodata excluded).
        path (str): Named in error messages.
    """
    if not isinstance(norm, dict) or norm.get('type') not in _NORM_TYPES:
        raise ValueError(f'{path}: norm must be a dict with type in {_NORM_TYPES}, got {norm!r}')
    norm = dict(norm)
    kind = norm.pop('type')
    c = img.shape[2]
    x = img.astype(np.float32)
    if kind == 'meanstd':
        unknown = set(norm) - {'mean', 'std'}
        if unknown or 'mean' not in norm or 'std' not in norm:
            raise KeyError(f'{path}: norm type "meanstd" takes mean and std, got {sorted(norm)}')
        mean = _per_band(norm['mean'], c, 'mean', path)
        std = _per_band(norm['std'], c, 'std', path)
        if np.any(std <= 0):
            raise ValueError(f'{path}: norm.std must be positive, got {std.tolist()}')
        return ((x - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)

    lo_out, hi_out = norm.pop('out_range', (0., 255.))
    clip = norm.pop('clip', True)
    if kind == 'range':
        unknown = set(norm) - {'min', 'max'}
        if unknown or 'min' not in norm or 'max' not in norm:
            raise KeyError(f'{path}: norm type "range" takes min, max, out_range, clip; '
                           f'got {sorted(norm) + ["out_range", "clip"]}')
        lo = _per_band(norm['min'], c, 'min', path)
        hi = _per_band(norm['max'], c, 'max', path)
    else:  # percentile
        unknown = set(norm) - {'low', 'high'}
        if unknown:
            raise KeyError(f'{path}: norm type "percentile" takes low, high, out_range, '
                           f'clip; got unknown {sorted(unknown)}')
        p_lo, p_hi = float(norm.get('low', 2.)), float(norm.get('high', 98.))
        if not 0 <= p_lo < p_hi <= 100:
            raise ValueError(f'{path}: norm percentiles must satisfy 0 <= low < high <= 100, '
                             f'got {p_lo}, {p_hi}')
        flat = x.reshape(-1, c)
        if valid is not None:
            flat = flat[valid.reshape(-1)]
        if flat.shape[0] == 0:  # all nodata: any finite mapping will do
            lo, hi = np.zeros(c), np.ones(c)
        else:
            lo, hi = np.percentile(flat, [p_lo, p_hi], axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.)
    scale = (hi_out - lo_out) / span
    out = (x - lo.astype(np.float32)) * scale.astype(np.float32) + np.float32(lo_out)
    if clip:
        np.clip(out, min(lo_out, hi_out), max(lo_out, hi_out), out=out)
    return out.astype(np.float32)


def _window_tuple(window) -> Optional[Tuple[int, int, int, int]]:
    if window is None:
        return None
    if len(window) != 4:
        raise ValueError(f'window must be (x0, y0, x1, y1), got {window!r}')
    x0, y0, x1, y1 = (int(v) for v in window)
    return x0, y0, x1, y1


def read_geo_raster(path: str,
                    bands: Optional[Sequence[int]] = None,
                    window=None,
                    nodata: Optional[float] = None,
                    backend_args: Optional[dict] = None,
                    out_shape: Optional[Tuple[int, int]] = None
                    ) -> Tuple[np.ndarray, np.ndarray, dict]:
    """Read (a window of) a raster with rasterio.

    Args:
        path (str): Raster file (GeoTIFF, VRT, ...).
        bands (Sequence[int], optional): 0-based bands in the wanted order;
            None reads all.
        window (tuple, optional): ``(x0, y0, x1, y1)`` pixel window (x1/y1
            exclusive) inside the raster; None reads all.
        nodata (float, optional): Nodata value overriding the file's. None
            uses GDAL's dataset mask (the file's nodata value, alpha band or
            internal mask; a pixel is nodata when all its bands are).
        backend_args (dict, optional): mmengine file backend arguments.
        out_shape (tuple, optional): ``(h, w)`` to read the window at, with
            nearest-neighbour resampling (GDAL uses the file's overviews if
            it has any): a cheap preview of a large scene (``geo`` still
            describes the full-resolution window). None: full resolution.

    Returns:
        tuple: ``img`` ``(h, w, bands)`` in the file's dtype, ``nodata_mask``
        ``(h, w)`` bool (True = nodata) and ``geo``: ``crs`` (WKT or None),
        ``transform`` (the affine ``(a, b, c, d, e, f)`` of the window),
        ``nodata``, ``dtype``, ``count`` (bands in the file), ``width`` and
        ``height`` (of the whole raster), ``window``, ``band_descriptions``.
    """
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform
    with _open(path, backend_args) as src:
        count = src.count
        if bands is None:
            indexes = list(range(1, count + 1))
        else:
            bad = [b for b in bands if not -count <= int(b) < count]
            if bad:
                raise IndexError(f'{path}: bands {list(bands)} asks for band(s) {bad}, but '
                                 f'the file has {count} (0-based indices)')
            indexes = [int(b) % count + 1 for b in bands]
        win = _window_tuple(window)
        rio_win = None
        if win is not None:
            x0, y0, x1, y1 = win
            if not (0 <= x0 < x1 <= src.width and 0 <= y0 < y1 <= src.height):
                raise ValueError(f'{path}: window {win} is outside the '
                                 f'{src.width}x{src.height} raster')
            rio_win = Window(x0, y0, x1 - x0, y1 - y0)
        shape_kw = {}
        if out_shape is not None:
            from rasterio.enums import Resampling
            shape_kw = dict(out_shape=(len(indexes), int(out_shape[0]), int(out_shape[1])),
                            resampling=Resampling.nearest)
        arr = src.read(indexes, window=rio_win, **shape_kw)
        if nodata is None:
            file_nodata = src.nodata
            mask_kw = dict(out_shape=shape_kw['out_shape'][1:],
                           resampling=shape_kw['resampling']) if shape_kw else {}
            mask = src.dataset_mask(window=rio_win, **mask_kw) == 0
        else:
            file_nodata = nodata
            # GDAL's rule: a pixel is nodata when all its (selected) bands are.
            if np.isnan(float(nodata)):
                mask = np.all(np.isnan(arr), axis=0)
            else:
                mask = np.all(arr == nodata, axis=0)
        transform = src.transform if rio_win is None else window_transform(rio_win, src.transform)
        geo = dict(
            crs=src.crs.to_wkt() if src.crs else None,
            transform=tuple(float(v) for v in tuple(transform)[:6]),
            nodata=None if file_nodata is None else float(file_nodata),
            dtype=str(arr.dtype),
            count=count,
            width=src.width,
            height=src.height,
            window=win,
            band_descriptions=[src.descriptions[i - 1] for i in indexes])
    return np.ascontiguousarray(arr.transpose(1, 2, 0)), mask, geo


def _apply_color_type(img: np.ndarray, color_type: str, path: str) -> np.ndarray:
    """Mimic OpenCV's decoding flags on the (selected) bands."""
    if color_type == 'unchanged':
        return img
    if color_type == 'color':
        if img.shape[2] == 1:
            return np.repeat(img, 3, axis=2)
        if img.shape[2] != 3:
            raise ValueError(
                f'{path} has {img.shape[2]} bands; color_type="color" needs 1 or 3 '
                '(select them with `bands`, e.g. bands=(2, 1, 0) for R, G, B of a '
                'B-G-R-NIR file, or use color_type="unchanged")')
        return np.ascontiguousarray(img[..., ::-1])  # RGB as stored -> BGR, as cv2
    # grayscale: ITU-R BT.601 luminance of R, G, B (cv2's conversion)
    if img.shape[2] == 1:
        return img
    if img.shape[2] != 3:
        raise ValueError(f'{path} has {img.shape[2]} bands; color_type="grayscale" needs '
                         '1 or 3 (select them with `bands`)')
    gray = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        gray = np.clip(np.rint(gray), info.min, info.max)
    return gray.astype(img.dtype)[..., None]


def nonfinite_pixels(img: np.ndarray) -> Optional[np.ndarray]:
    """``(H, W)`` bool mask of the pixels of a float ``(H, W[, C])`` image with
    any non-finite (NaN, +-Inf) band; None for integer images and when all
    pixels are finite."""
    if not np.issubdtype(img.dtype, np.floating):
        return None
    finite = np.isfinite(img)
    if finite.all():
        return None
    return ~finite.all(axis=2) if img.ndim == 3 else ~finite


def nonfinite_error(path, count: int, what: str = 'image') -> ValueError:
    """The error for a float image with non-finite pixels nobody declared as nodata."""
    return ValueError(
        f'{path}: {count} pixel(s) of the {what} hold NaN/Inf values and are not marked as '
        'nodata. One NaN spreads through the global DCT of RS-vHeat to every feature of '
        'the image. Give the file a nodata tag, declare them with '
        "LoadGeoRasterFromFile(nodata=float('nan')) or nonfinite='nodata' (filled with "
        '`nodata_fill`, ignored in labels by GeoRasterNodataToIgnore), or fill them '
        'before training.')


_NONFINITE = ('error', 'nodata')


@TRANSFORMS.register_module()
class LoadGeoRasterFromFile(BaseTransform):
    """Load a GeoTIFF (any GDAL raster) of any band count and dtype.

    Required keys: ``img_path`` (or ``key``). Optional: ``window``
    (``(x0, y0, x1, y1)``) to read only part of a large scene.

    Added keys: ``img`` (``(H, W, C)``), ``img_shape``, ``ori_shape``,
    ``nodata_mask`` (``(H, W)`` bool, True where the raster has no data) and
    ``geo`` (georeferencing of the loaded pixels, see
    :func:`read_geo_raster`). Pack ``geo`` with ``meta_keys`` if a model or
    hook needs it.

    Float rasters often mark missing data with NaN and no nodata tag. A NaN
    pixel that reached RS-vHeat would make every feature of the image NaN
    (the DCT is global), so non-finite pixels that are not nodata already
    raise an error naming the file (``nonfinite='error'``, the default for
    training data), or join the nodata mask (``nonfinite='nodata'``, what
    :class:`~rsvheat_mm.apis.RSVHeatInferencer` uses).

    Args:
        bands (Sequence[int], optional): 0-based bands to keep, in this order
            (e.g. ``(3, 2, 1)`` for R, G, B of a Sentinel-2 stack). None keeps
            all bands in file order. Defaults to None.
        color_type (str): As OpenCV decodes: ``'unchanged'`` (the selected
            bands as they are, default), ``'color'`` (3 bands as BGR, so
            configs written for ``LoadImageFromFile`` + ``bgr_to_rgb=True``
            see the same channel order; 1 band is repeated) or
            ``'grayscale'`` (1 band, or the luminance of 3).
        to_float32 (bool): Cast to float32 (always the case with ``norm``).
            Defaults to False: integer data keep their dtype (uint16 too,
            without OpenCV's rescaling to 8 bits).
        norm (dict, optional): Per-band normalisation, see
            :func:`normalize_bands` (``range`` / ``meanstd`` /
            ``percentile``), applied after band selection and ``color_type``
            (per-band values in that output order). Defaults to None.
        nodata (float, optional): Nodata value overriding the file's; None
            uses the file's nodata value / mask. Defaults to None.
        nodata_fill (float): Value written into nodata pixels of ``img``
            (after normalisation), so that e.g. -9999 never reaches the
            network. None leaves them as read. Defaults to 0.
        nonfinite (str): What to do with NaN/Inf pixels (any selected band)
            of float rasters that the nodata value / mask does not cover:
            ``'error'`` (default) raises a ``ValueError`` naming the file,
            ``'nodata'`` adds them to ``nodata_mask``.
        key (str): Results key holding the path. Defaults to ``'img_path'``.
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self,
                 bands: Optional[Sequence[int]] = None,
                 color_type: str = 'unchanged',
                 to_float32: bool = False,
                 norm: Optional[dict] = None,
                 nodata: Optional[float] = None,
                 nodata_fill: Optional[float] = 0.,
                 nonfinite: str = 'error',
                 key: str = 'img_path',
                 backend_args: Optional[dict] = None) -> None:
        if color_type not in _COLOR_TYPES:
            raise ValueError(f'LoadGeoRasterFromFile: color_type must be one of {_COLOR_TYPES}, '
                             f'got {color_type!r}')
        if norm is not None and (not isinstance(norm, dict) or norm.get('type') not in _NORM_TYPES):
            raise ValueError(f'LoadGeoRasterFromFile: norm must be None or a dict with type in '
                             f'{_NORM_TYPES}, got {norm!r}')
        if nonfinite not in _NONFINITE:
            raise ValueError(f'LoadGeoRasterFromFile: nonfinite must be one of {_NONFINITE}, '
                             f'got {nonfinite!r}')
        self.bands = None if bands is None else [int(b) for b in bands]
        self.color_type = color_type
        self.to_float32 = to_float32
        self.norm = None if norm is None else dict(norm)
        self.nodata = nodata
        self.nodata_fill = nodata_fill
        self.nonfinite = nonfinite
        self.key = key
        self.backend_args = backend_args

    def read(self, path: str, window=None, out_shape: Optional[Tuple[int, int]] = None) -> dict:
        """Read ``path`` (or its ``window``; at ``out_shape`` for a preview).

        Returns:
            dict: ``img``, ``nodata_mask``, ``nonfinite_mask`` (the NaN/Inf
            pixels added to ``nodata_mask`` by ``nonfinite='nodata'``, None
            if there are none) and ``geo`` (see :func:`read_geo_raster`).
        """
        img, mask, geo = read_geo_raster(path, self.bands, window, self.nodata,
                                         self.backend_args, out_shape)
        bad = nonfinite_pixels(img)
        if bad is not None:
            bad &= ~mask
            if not bad.any():
                bad = None
            elif self.nonfinite == 'error':
                raise nonfinite_error(path, int(bad.sum()),
                                      'raster' if window is None else f'window {tuple(window)}')
            else:
                mask = mask | bad
        img = _apply_color_type(img, self.color_type, path)
        if self.norm is not None:
            img = normalize_bands(img, self.norm, ~mask, path)
        elif self.to_float32:
            img = img.astype(np.float32)
        if self.nodata_fill is not None and mask.any():
            img = img.copy() if not img.flags.writeable else img
            img[mask] = np.asarray(self.nodata_fill).astype(img.dtype)
        return dict(img=img, nodata_mask=mask, nonfinite_mask=bad, geo=geo)

    def transform(self, results: dict) -> dict:
        if self.key not in results:
            raise KeyError(f'LoadGeoRasterFromFile: results have no `{self.key}` '
                           f'(keys: {sorted(results)})')
        path = os.fspath(results[self.key])
        out = self.read(path, results.get('window'))
        img = out['img']
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        results['nodata_mask'] = out['nodata_mask']
        results['geo'] = out['geo']
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(bands={self.bands}, color_type={self.color_type!r}, '
                f'to_float32={self.to_float32}, norm={self.norm}, nodata={self.nodata}, '
                f'nodata_fill={self.nodata_fill}, nonfinite={self.nonfinite!r})')


@TRANSFORMS.register_module()
class LoadGeoRasterPair(LoadGeoRasterFromFile):
    """Load a co-registered bi-temporal pair of rasters, stacked channel-wise.

    The change-detection counterpart of :class:`LoadGeoRasterFromFile`, with
    the layout of ``LoadBitemporalImages``: ``img`` is ``(H, W, 2C)``, date
    A (``img_path``) then date B (``img_path2``), ``date_channels = C``.
    Both dates are read with the same arguments (and the same ``window``);
    ``nodata_mask`` is the union of both dates' masks and ``geo`` is date
    A's. Dates of different sizes or band counts are refused.
    """

    def __init__(self, *args, key2: str = 'img_path2', **kwargs):
        super().__init__(*args, **kwargs)
        self.key2 = key2

    def transform(self, results: dict) -> dict:
        for key in (self.key, self.key2):
            if key not in results:
                raise KeyError(f'LoadGeoRasterPair: results have no `{key}` '
                               f'(keys: {sorted(results)})')
        path_a, path_b = os.fspath(results[self.key]), os.fspath(results[self.key2])
        date_a = self.read(path_a, results.get('window'))
        date_b = self.read(path_b, results.get('window'))
        (img_a, mask_a, geo_a), (img_b, mask_b, geo_b) = (
            (d['img'], d['nodata_mask'], d['geo']) for d in (date_a, date_b))
        if img_a.shape != img_b.shape:
            raise ValueError(f'the two dates must have the same size and bands: {path_a} is '
                             f'{img_a.shape} (h, w, bands), {path_b} is {img_b.shape}')
        if geo_a['crs'] != geo_b['crs'] or not np.allclose(geo_a['transform'],
                                                           geo_b['transform']):
            raise ValueError(f'{path_a} and {path_b} are not on the same grid (CRS or '
                             'transform differ); resample one onto the other first')
        img = np.concatenate([img_a, img_b], axis=2)
        results['img'] = img
        results['date_channels'] = img_a.shape[2]
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        results['nodata_mask'] = mask_a | mask_b
        results['geo'] = geo_a
        return results


@TRANSFORMS.register_module()
class GeoRasterNodataToIgnore(BaseTransform):
    """Set the label of nodata pixels to the ignore index.

    Required keys: ``nodata_mask`` (from :class:`LoadGeoRasterFromFile` /
    :class:`LoadGeoRasterPair`) and ``gt_seg_map``. Put it directly after
    the annotation loader: later geometric transforms move ``gt_seg_map``
    but not ``nodata_mask``.

    Args:
        ignore_index (int): Label written into nodata pixels. Defaults to 255
            (mmseg's default ``ignore_index``).
    """

    def __init__(self, ignore_index: int = 255):
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        for key in ('nodata_mask', 'gt_seg_map'):
            if key not in results:
                raise KeyError(f'GeoRasterNodataToIgnore needs `{key}` (load the image with '
                               'LoadGeoRasterFromFile and the label before this transform); '
                               f'got keys {sorted(results)}')
        mask, seg = results['nodata_mask'], results['gt_seg_map']
        if mask.shape != seg.shape[:2]:
            raise ValueError(f'GeoRasterNodataToIgnore: nodata mask {mask.shape} and label '
                             f'{seg.shape} of {results.get("img_path")!r} differ; place the '
                             'transform before any resize/crop')
        if mask.any():
            seg = seg.copy()
            seg[mask] = self.ignore_index
            results['gt_seg_map'] = seg
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(ignore_index={self.ignore_index})'


# The image files of a sample: single image, bi-temporal pair, optical + SAR pair.
_IMAGE_PATH_KEYS = ('img_path', 'img_path2', 'sar_path')


@TRANSFORMS.register_module()
class CheckFiniteImage(BaseTransform):
    """Refuse an image with NaN/Inf pixels with an error naming its file(s).

    One NaN pixel makes every RS-vHeat feature of the image NaN (the DCT is
    global), and the loss of the whole batch with it. The raster loaders of
    this module check float rasters themselves; put this transform right
    after any other loader that may give float images -- e.g.
    ``LoadImageFromFile(color_type='unchanged')`` on float TIFFs, or
    ``LoadBitemporalImages`` -- so that a bad file is named when it is
    loaded, not found later as a NaN loss::

        train_pipeline = [
            dict(type='LoadImageFromFile', color_type='unchanged'),
            dict(type='CheckFiniteImage'),
            ...]

    Pixels already in ``nodata_mask`` (set by a loader) are allowed.

    Required keys: ``img`` (or ``key``). Optional: ``nodata_mask``,
    ``img_path``, ``img_path2``, ``sar_path`` (named in the error).

    Args:
        key (str): Results key of the image. Defaults to ``'img'``.
    """

    def __init__(self, key: str = 'img') -> None:
        self.key = key

    def transform(self, results: dict) -> dict:
        if self.key not in results:
            raise KeyError(f'CheckFiniteImage: results have no `{self.key}` '
                           f'(keys: {sorted(results)}); put it after the image loader')
        bad = nonfinite_pixels(np.asarray(results[self.key]))
        if bad is not None:
            nodata = results.get('nodata_mask')
            if nodata is not None and nodata.shape == bad.shape:
                bad &= ~nodata
            if bad.any():
                paths = [str(results[k]) for k in _IMAGE_PATH_KEYS if results.get(k)]
                raise nonfinite_error(' + '.join(paths) or '<array>', int(bad.sum()))
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(key={self.key!r})'


def raster_loader_cfg(loader_cfg: Optional[Dict]) -> Optional[dict]:
    """The raster-loader config equivalent to a pipeline's image loader config.

    ``LoadGeoRasterFromFile`` / ``LoadGeoRasterPair`` configs are returned as
    they are; an OpenCV-based ``LoadImageFromFile`` (mmcv/mmseg/mmdet/
    mmpretrain) or ``LoadBitemporalImages`` becomes the raster loader with
    the same ``color_type`` and ``to_float32`` -- so a GeoTIFF goes through
    a config written for PNGs with the same channel order, and 16-bit
    rasters keep their values. Other loaders (e.g. ``LoadOpticalSARPair``,
    which reads several files its own way): None.
    """
    cfg = dict(loader_cfg or {})
    name = str(cfg.pop('type', 'LoadImageFromFile')).split('.')[-1]
    if name in ('LoadGeoRasterFromFile', 'LoadGeoRasterPair'):
        return dict(type=name, **cfg)
    if name not in _OPENCV_LOADERS:
        return None
    color_type = cfg.get('color_type', 'color')
    if color_type not in _COLOR_TYPES:  # e.g. 'color_ignore_orientation'
        color_type = 'color' if color_type.startswith('color') else 'grayscale' \
            if color_type.startswith('grayscale') else 'unchanged'
    return dict(type='LoadGeoRasterPair' if name == 'LoadBitemporalImages'
                else 'LoadGeoRasterFromFile',
                color_type=color_type, to_float32=cfg.get('to_float32', False),
                backend_args=cfg.get('backend_args'))


def loader_for_raster(loader_cfg: Optional[Dict]) -> Optional[LoadGeoRasterFromFile]:
    """The raster loader built from :func:`raster_loader_cfg` (None if there is none)."""
    cfg = raster_loader_cfg(loader_cfg)
    if cfg is None:
        return None
    cls = LoadGeoRasterPair if cfg.pop('type') == 'LoadGeoRasterPair' else LoadGeoRasterFromFile
    return cls(**cfg)

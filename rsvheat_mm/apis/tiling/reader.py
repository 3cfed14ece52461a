"""Reading windows of a scene made of 1..N co-registered images.

A scene is one image (segmentation, detection, classification) or several
co-registered images stacked channel-wise (change detection: date A then
date B, as ``LoadGeoRasterPair`` / ``LoadBitemporalImages`` stack them). It
is read the way the config's loader would read it:

* rasters (GeoTIFF and other GDAL formats) window by window with rasterio,
  through the raster equivalent of the config's loader
  (:func:`~rsvheat_mm.datasets.transforms.geotiff.loader_for_raster`):
  band selection, normalisation, nodata;
* other files decoded once by the config's own loader;
* arrays sliced.

Every window comes with its nodata mask. NaN/Inf pixels of float data count
as nodata (whether or not the file has a nodata tag) and are filled with 0
before the model sees them: one NaN would make every RS-vHeat feature of the
window NaN (its DCT is global).
"""
import os
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from rsvheat_mm.datasets.transforms.geotiff import nonfinite_pixels
from ..geo_io import is_raster_path, read_georef

__all__ = ['WindowData', 'SceneReader', 'PATH_KEYS', 'nearest_indices', 'scene_paths']

#: Data-info keys of the 1st, 2nd, ... image of a scene (the bi-temporal loaders' keys).
PATH_KEYS = ('img_path', 'img_path2')


class WindowData(NamedTuple):
    """Pixels of one window: ``img`` ``(h, w, C)``, ``nodata`` ``(h, w)`` bool
    (None: all valid) and ``nonfinite`` (the NaN/Inf part of ``nodata``, or None)."""
    img: np.ndarray
    nodata: Optional[np.ndarray]
    nonfinite: Optional[np.ndarray]


def _fill_nonfinite(img: np.ndarray, nodata: Optional[np.ndarray], copy: bool) -> WindowData:
    bad = nonfinite_pixels(img)
    if bad is None:
        return WindowData(img, nodata, None)
    img = img.copy() if copy or not img.flags.writeable else img
    img[bad] = 0
    nodata = bad if nodata is None else nodata | bad
    return WindowData(img, nodata, bad)


class SceneReader:
    """Windows of a scene of 1..N co-registered images, stacked channel-wise.

    Args:
        scene: One image -- a path, or an array as the config's loader would
            give it -- or several co-registered image paths (e.g. the two
            dates of a change-detection pair), or a dict of data-info keys
            (``img_path``, ``img_path2``, ...) for the config's loader.
        raster_loader (LoadGeoRasterFromFile, optional): Reads windows of
            rasters (``None``: rasters are decoded whole by ``file_loader``).
        file_loader (callable, optional): The config's built loader, for
            other files (required for them).

    Attributes:
        paths (list[str]): The image paths (empty for an array).
        height, width (int): Scene size.
        geo (dict | None): Georeferencing of the first raster (see
            :func:`~rsvheat_mm.apis.geo_io.read_georef`).
        extra (dict): Data-info keys of a dict scene and keys the loader
            added besides the image (e.g. ``date_channels``), passed on with
            every window.
    """

    def __init__(self, scene, raster_loader=None, file_loader=None) -> None:
        self.paths: List[str] = []
        self.geo: Optional[dict] = None
        self.extra: dict = {}
        self._array: Optional[np.ndarray] = None
        self._array_nodata: Optional[np.ndarray] = None
        self._raster = None
        info = None
        if isinstance(scene, np.ndarray):
            if scene.ndim not in (2, 3):
                raise ValueError(f'image arrays must be (H, W[, C]), got {scene.shape}')
            self._array = scene
        else:
            if isinstance(scene, dict):
                info = dict(scene)
                self.paths = [os.fspath(info[k]) for k in PATH_KEYS if info.get(k) is not None]
                self.extra = {k: v for k, v in info.items() if k not in PATH_KEYS}
            elif isinstance(scene, (str, os.PathLike)):
                self.paths = [os.fspath(scene)]
            elif isinstance(scene, (tuple, list)) and scene and \
                    all(isinstance(p, (str, os.PathLike)) for p in scene):
                self.paths = [os.fspath(p) for p in scene]
            else:
                raise TypeError('a scene is a path, an array, a sequence of co-registered '
                                f'image paths or a dict of data-info keys; got {scene!r}')
            for path in self.paths:
                if not os.path.isfile(path):
                    raise FileNotFoundError(f'input image not found: {path}')
            if raster_loader is not None and self.paths and \
                    all(is_raster_path(p) for p in self.paths):
                self._raster = raster_loader
                self._open_rasters()
            else:
                self._decode(info, file_loader)
        if self._array is not None:
            self.height, self.width = self._array.shape[:2]
            if len(self.paths) > 1:
                self.extra.setdefault('date_channels', self._channels() // len(self.paths))

    def _open_rasters(self) -> None:
        geos = [read_georef(p) for p in self.paths]
        first = geos[0]
        for path, geo in zip(self.paths[1:], geos[1:]):
            if (geo['height'], geo['width']) != (first['height'], first['width']):
                raise ValueError(f'the images of a scene must be co-registered: {self.paths[0]} '
                                 f'is {first["width"]}x{first["height"]} px, {path} is '
                                 f'{geo["width"]}x{geo["height"]}')
            if geo['crs'] != first['crs'] or not np.allclose(geo['transform'],
                                                             first['transform']):
                raise ValueError(f'{self.paths[0]} and {path} are not on the same grid (CRS or '
                                 'transform differ); resample one onto the other first')
        self.geo = first
        self.height, self.width = first['height'], first['width']
        if len(self.paths) > 1:
            counts = {g['count'] for g in geos}
            if len(counts) > 1:
                raise ValueError(f'the images of a scene must have the same bands: '
                                 f'{[g["count"] for g in geos]} bands in {self.paths}')

    def _decode(self, info: Optional[dict], file_loader) -> None:
        if file_loader is None:
            raise ValueError(f'{self.paths}: no loader to decode it with')
        if info is None:
            if len(self.paths) > len(PATH_KEYS):
                raise ValueError(f'the config\'s loader reads at most {len(PATH_KEYS)} images; '
                                 f'got {len(self.paths)}: {self.paths}')
            info = dict(zip(PATH_KEYS, self.paths))
        info.setdefault('img_id', 0)
        results = file_loader(info)
        if results is None:
            raise ValueError(f'cannot decode input image(s) {self.paths}')
        self._array = results['img']
        self._array_nodata = results.get('nodata_mask')
        self.geo = results.get('geo') if results.get('geo') else (
            read_georef(self.paths[0]) if self.paths else None)
        if 'date_channels' in results:
            self.extra['date_channels'] = results['date_channels']

    def _channels(self) -> int:
        return 1 if self._array.ndim == 2 else self._array.shape[2]

    @property
    def is_raster(self) -> bool:
        """Whether windows are read from rasters (not held in memory)."""
        return self._raster is not None

    def read(self, window: Optional[Tuple[int, int, int, int]] = None) -> WindowData:
        """The pixels of ``window`` ``(x0, y0, x1, y1)`` (None: the whole scene)."""
        if window is None:
            window = (0, 0, self.width, self.height)
        x0, y0, x1, y1 = (int(v) for v in window)
        if self._raster is None:
            nodata = None if self._array_nodata is None else self._array_nodata[y0:y1, x0:x1]
            img = self._array[y0:y1, x0:x1]
            data = _fill_nonfinite(img, nodata, copy=True)
            return data._replace(img=np.ascontiguousarray(data.img))
        return self._read_rasters((x0, y0, x1, y1), None)

    def _read_rasters(self, window, out_shape) -> WindowData:
        imgs, nodata, nonfinite = [], None, None
        for path in self.paths:
            out = self._raster.read(path, window, out_shape)
            imgs.append(out['img'])
            nodata = out['nodata_mask'] if nodata is None else nodata | out['nodata_mask']
            bad = out['nonfinite_mask']
            if bad is not None:
                nonfinite = bad if nonfinite is None else nonfinite | bad
        if len(imgs) > 1:
            self.extra['date_channels'] = imgs[0].shape[2]
        img = imgs[0] if len(imgs) == 1 else np.concatenate(imgs, axis=2)
        # the loader filled what it masked; anything left (nonfinite='error' would
        # have raised, nodata_fill=None keeps them) is still filled here
        data = _fill_nonfinite(img, nodata, copy=False)
        if data.nonfinite is not None:
            nonfinite = data.nonfinite if nonfinite is None else nonfinite | data.nonfinite
        return data._replace(nonfinite=nonfinite)

    def preview(self, max_side: int) -> Tuple[WindowData, float]:
        """The whole scene at most ``max_side`` px a side (nearest neighbour):
        ``(data, scale)`` with ``scale`` = preview px per scene px (<= 1)."""
        scale = min(1., max_side / max(self.height, self.width))
        if scale >= 1:
            return self.read(), 1.
        h = max(1, int(round(self.height * scale)))
        w = max(1, int(round(self.width * scale)))
        if self._raster is not None:
            return self._read_rasters((0, 0, self.width, self.height), (h, w)), scale
        rows, cols = nearest_indices(self.height, h), nearest_indices(self.width, w)
        nodata = None if self._array_nodata is None else self._array_nodata[rows][:, cols]
        return _fill_nonfinite(self._array[rows][:, cols], nodata, copy=False), scale


def nearest_indices(size: int, out: int) -> np.ndarray:
    """Source indices of ``out`` evenly spaced samples of ``size`` (pixel centres)."""
    return np.minimum(((np.arange(out) + 0.5) * size / out).astype(np.int64), size - 1)


def scene_paths(scene) -> Sequence[str]:
    """The image paths of a scene argument (see :class:`SceneReader`)."""
    if isinstance(scene, (str, os.PathLike)):
        return [os.fspath(scene)]
    if isinstance(scene, dict):
        return [os.fspath(scene[k]) for k in PATH_KEYS if scene.get(k) is not None]
    if isinstance(scene, (tuple, list)):
        return [os.fspath(p) for p in scene]
    return []

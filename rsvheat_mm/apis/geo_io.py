"""Georeferenced outputs: class/change masks as GeoTIFF, detections as GeoJSON.

Predictions on a GeoTIFF keep the source CRS and affine transform, so they
overlay the scene in QGIS/ArcGIS/GDAL without any further step:

* :func:`write_geotiff` / :class:`GeoTIFFStripWriter` write a mask (uint8
  class indices, 255 = nodata, with the class palette as colour table),
  whole or strip by strip for scenes that do not fit in memory, to a
  temporary file next to the target that is renamed onto it at the end
  (readers never see half a raster).
* :func:`detections_to_geojson` maps boxes from pixel to map coordinates
  through the transform -- horizontal ``x1 y1 x2 y2``, rotated
  ``cx cy w h angle`` (mmrotate, radians) and quadrilaterals -- as polygon
  features with score, label and class, in the source CRS (named by the
  GeoJSON-2008 ``crs`` member, which QGIS/GDAL read).

rasterio is imported on first use; ``import rsvheat_mm`` stays light.
"""
import json
import os
import os.path as osp
import tempfile
from typing import Dict, Optional, Sequence

import numpy as np

from rsvheat_mm.datasets.transforms.geotiff import RASTER_SUFFIXES, _rasterio
from rsvheat_mm.utils.fileio import atomic_write

__all__ = [
    'is_raster_path', 'read_georef', 'is_georeferenced', 'write_geotiff',
    'GeoTIFFStripWriter', 'box_corners', 'detections_to_geojson', 'write_json',
    'display_rgb', 'colormap_from_palette', 'NODATA_CLASS'
]

#: Value of nodata pixels in written class / change masks.
NODATA_CLASS = 255

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def is_raster_path(path) -> bool:
    """Whether ``path`` is read through rasterio (GeoTIFF and other GDAL rasters)."""
    return isinstance(path, (str, os.PathLike)) and \
        osp.splitext(os.fspath(path))[1].lower() in RASTER_SUFFIXES


def read_georef(path: str) -> Optional[dict]:
    """``crs`` (WKT or None), ``transform`` (6 floats), ``width``, ``height``,
    ``count``, ``nodata`` of a raster; None for files rasterio is not used for."""
    if not is_raster_path(path):
        return None
    rasterio = _rasterio()
    with rasterio.open(path) as src:
        return dict(crs=src.crs.to_wkt() if src.crs else None,
                    transform=tuple(float(v) for v in tuple(src.transform)[:6]),
                    width=src.width, height=src.height, count=src.count,
                    nodata=src.nodata)


def is_georeferenced(geo: Optional[dict]) -> bool:
    """True when ``geo`` has a CRS or a non-identity transform."""
    if not geo:
        return False
    return bool(geo.get('crs')) or not np.allclose(geo.get('transform', _IDENTITY), _IDENTITY)


def colormap_from_palette(palette) -> Optional[Dict[int, tuple]]:
    """GDAL colour table ``{index: (r, g, b, 255)}`` from a dataset palette."""
    if not palette:
        return None
    return {i: tuple(int(v) for v in color[:3]) + (255, )
            for i, color in enumerate(palette) if i < NODATA_CLASS}


def _profile(height: int, width: int, count: int, dtype: str, geo: Optional[dict],
             nodata) -> dict:
    from rasterio.transform import Affine
    profile = dict(driver='GTiff', height=height, width=width, count=count, dtype=dtype,
                   compress='deflate', tiled=True, blockxsize=256, blockysize=256)
    if height < 256 or width < 256:  # GTiff tiles must fit (and be multiples of 16)
        profile.update(tiled=False)
        profile.pop('blockxsize')
        profile.pop('blockysize')
    if geo:
        if geo.get('crs'):
            profile['crs'] = geo['crs']
        if geo.get('transform') is not None:
            profile['transform'] = Affine(*geo['transform'][:6])
    if nodata is not None:
        profile['nodata'] = nodata
    return profile


def _temp_next_to(path: str) -> str:
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp.tif',
                               dir=directory)
    os.close(fd)
    return tmp


class GeoTIFFStripWriter:
    """Write a (huge) single- or multi-band GeoTIFF strip by strip, atomically.

    Use as a context manager: rows go to a temporary file in the target's
    directory, which replaces ``path`` only when the block exits without an
    exception (otherwise it is deleted)::

        with GeoTIFFStripWriter(out, height, width, geo=geo, nodata=255) as w:
            w.write(rows, row_offset)

    Args:
        path (str): Target ``.tif``.
        height (int), width (int): Raster size.
        count (int): Bands. Defaults to 1.
        dtype (str): Sample type. Defaults to ``'uint8'``.
        geo (dict, optional): ``crs`` and ``transform`` to keep (from
            :func:`read_georef` or ``results['geo']``).
        nodata (number, optional): Nodata value of the output.
        colormap (dict, optional): Colour table of band 1 (uint8 only).
    """

    def __init__(self, path: str, height: int, width: int, count: int = 1,
                 dtype: str = 'uint8', geo: Optional[dict] = None, nodata=None,
                 colormap: Optional[dict] = None):
        if not str(path).lower().endswith(('.tif', '.tiff')):
            raise ValueError(f'GeoTIFF output must end with .tif/.tiff: {path}')
        self.path = os.fspath(path)
        self.profile = _profile(height, width, count, dtype, geo, nodata)
        self.colormap = colormap
        self._tmp = None
        self._dst = None

    def __enter__(self):
        rasterio = _rasterio()
        self._tmp = _temp_next_to(self.path)
        self._dst = rasterio.open(self._tmp, 'w', **self.profile)
        if self.colormap and self.profile['dtype'] == 'uint8':
            self._dst.write_colormap(1, self.colormap)
        return self

    def write(self, rows: np.ndarray, row_offset: int) -> None:
        """Write ``rows`` (``(h, W)`` or ``(count, h, W)``) starting at ``row_offset``."""
        from rasterio.windows import Window
        arr = rows[None] if rows.ndim == 2 else rows
        if arr.shape[0] != self.profile['count'] or arr.shape[2] != self.profile['width']:
            raise ValueError(f'{self.path}: rows of shape {rows.shape} do not fit a '
                             f'{self.profile["count"]}-band raster {self.profile["width"]} wide')
        self._dst.write(arr.astype(self.profile['dtype'], copy=False),
                        window=Window(0, row_offset, arr.shape[2], arr.shape[1]))

    def __exit__(self, exc_type, exc, tb):
        try:
            self._dst.close()
            if exc_type is None:
                os.chmod(self._tmp, 0o644)
                os.replace(self._tmp, self.path)
        finally:
            if osp.exists(self._tmp):
                os.remove(self._tmp)
        return False


def write_geotiff(path: str, array: np.ndarray, geo: Optional[dict] = None, nodata=None,
                  colormap: Optional[dict] = None) -> None:
    """Write ``(H, W)`` or ``(C, H, W)`` ``array`` as a GeoTIFF keeping ``geo``'s
    CRS and transform, atomically (temporary file + rename)."""
    arr = array[None] if array.ndim == 2 else array
    with GeoTIFFStripWriter(path, arr.shape[1], arr.shape[2], arr.shape[0], str(arr.dtype),
                            geo, nodata, colormap) as writer:
        writer.write(arr, 0)


# -- detections ----------------------------------------------------------------------
def box_corners(boxes: np.ndarray) -> np.ndarray:
    """Corners ``(N, 4, 2)`` (pixel x, y) of horizontal ``(N, 4)`` ``x1 y1 x2 y2``,
    rotated ``(N, 5)`` ``cx cy w h angle`` (radians, mmrotate) or ``(N, 8)``
    quadrilateral boxes."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 5, 8):
        raise ValueError(f'boxes must be (N, 4), (N, 5) or (N, 8), got {boxes.shape}')
    if boxes.shape[1] == 4:
        x1, y1, x2, y2 = boxes.T
        return np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1),
                         np.stack([x2, y2], -1), np.stack([x1, y2], -1)], axis=1)
    if boxes.shape[1] == 8:
        return boxes.reshape(-1, 4, 2)
    cx, cy, w, h, a = boxes.T
    cos, sin = np.cos(a), np.sin(a)
    corners = []
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        dx, dy = sx * w / 2, sy * h / 2
        corners.append(np.stack([cx + dx * cos - dy * sin, cy + dx * sin + dy * cos], -1))
    return np.stack(corners, axis=1)


def _crs_member(crs_wkt: Optional[str]) -> Optional[dict]:
    if not crs_wkt:
        return None
    from rasterio.crs import CRS
    crs = CRS.from_user_input(crs_wkt)  # WKT (read_georef) or e.g. "EPSG:32650"
    epsg = crs.to_epsg()
    name = f'urn:ogc:def:crs:EPSG::{epsg}' if epsg else crs.to_wkt()
    return {'type': 'name', 'properties': {'name': name}}


def detections_to_geojson(boxes, scores, labels, classes: Optional[Sequence[str]] = None,
                          geo: Optional[dict] = None,
                          properties: Optional[dict] = None) -> dict:
    """A GeoJSON ``FeatureCollection`` of detections in the source CRS.

    Args:
        boxes: ``(N, 4|5|8)`` boxes in pixels of the image described by ``geo``
            (see :func:`box_corners`).
        scores, labels: ``(N, )`` scores and class indices.
        classes (Sequence[str], optional): Class names for ``labels``.
        geo (dict, optional): ``crs`` (WKT) and ``transform`` (affine
            ``a b c d e f``) of the image; without it coordinates stay pixels.
        properties (dict, optional): Extra members of the collection
            (e.g. the source image).

    Returns:
        dict: Polygons (exterior ring counter-clockwise, closed) with
        ``score``, ``label`` and ``class`` properties; ``crs`` names the
        source CRS (``urn:ogc:def:crs:EPSG::<code>`` when it has one).
    """
    corners = box_corners(boxes)
    a, b, c, d, e, f = (geo or {}).get('transform', _IDENTITY)[:6]
    x = a * corners[..., 0] + b * corners[..., 1] + c
    y = d * corners[..., 0] + e * corners[..., 1] + f
    features = []
    for i in range(corners.shape[0]):
        ring = [[float(x[i, k]), float(y[i, k])] for k in range(4)]
        # Shoelace: positive = counter-clockwise (RFC 7946 exterior rings).
        area = sum(ring[k][0] * ring[(k + 1) % 4][1] - ring[(k + 1) % 4][0] * ring[k][1]
                   for k in range(4))
        if area < 0:
            ring = ring[::-1]
        ring.append(list(ring[0]))
        label = int(labels[i])
        props = dict(score=round(float(scores[i]), 5), label=label)
        if classes is not None and 0 <= label < len(classes):
            props['class'] = str(classes[label])
        features.append(dict(type='Feature', properties=props,
                             geometry=dict(type='Polygon', coordinates=[ring])))
    collection = dict(type='FeatureCollection')
    crs = _crs_member((geo or {}).get('crs'))
    if crs is not None:
        collection['crs'] = crs
    collection.update(properties or {})
    collection['features'] = features
    return collection


def write_json(path: str, obj) -> None:
    """Dump ``obj`` as JSON atomically."""
    atomic_write(json.dumps(obj, indent=1, allow_nan=False), path)


# -- display -------------------------------------------------------------------------
def display_rgb(img: np.ndarray, channel_order: str = 'bgr',
                bands: Optional[Sequence[int]] = None,
                valid: Optional[np.ndarray] = None) -> np.ndarray:
    """A uint8 RGB rendering of a loaded image for visualizers.

    ``(H, W)`` / 1-band images are shown grey; 3 bands in ``channel_order``
    (``'bgr'`` for OpenCV-style loaders, ``'rgb'``); other band counts show
    ``bands`` (default: the first three, as R, G, B). Non-uint8 data get a
    2-98 % percentile stretch per band (over ``valid`` pixels).
    """
    arr = img[..., None] if img.ndim == 2 else img
    if bands is not None:
        arr = arr[..., list(bands)]
    elif arr.shape[2] == 3 and channel_order == 'bgr':
        arr = arr[..., ::-1]
    elif arr.shape[2] == 4 and channel_order == 'bgr':  # BGRA
        arr = arr[..., 2::-1]
    elif arr.shape[2] >= 3:
        arr = arr[..., :3]
    else:
        arr = np.repeat(arr[..., :1], 3, axis=2)
    if arr.dtype != np.uint8:
        flat = arr.reshape(-1, arr.shape[2]).astype(np.float64)
        if valid is not None and valid.any():
            flat = flat[valid.reshape(-1)]
        finite = flat[np.all(np.isfinite(flat), axis=1)]
        if finite.size:
            lo, hi = np.percentile(finite, [2, 98], axis=0)
        else:
            lo, hi = np.zeros(arr.shape[2]), np.ones(arr.shape[2])
        span = np.where(hi - lo > 0, hi - lo, 1.)
        arr = np.clip((np.nan_to_num(arr.astype(np.float64)) - lo) / span * 255, 0, 255)
        arr = np.rint(arr).astype(np.uint8)
    return np.ascontiguousarray(arr)

"""Class maps of scenes, written strip by strip as their patches become final.

The blender hands over final patches row band by row band, left to right.
:class:`MaskWriter` assembles each band (one byte per pixel of the band) and
passes it on as soon as it is complete:

* to a GeoTIFF on disk (``.tif``/``.tiff``: the source CRS and transform,
  ``255`` = nodata, the palette as colour table), through
  :class:`~rsvheat_mm.apis.geo_io.GeoTIFFStripWriter`, which writes a
  temporary file renamed onto the target only when the scene is complete;
* to a class histogram and a small preview (for drawing);
* to an in-memory map only if asked (``keep=True``) or for formats that
  cannot be written in strips (PNG, ...; encoded at the end, written
  atomically too).

So a GeoTIFF output needs memory for one band, whatever the scene size.
"""
import os.path as osp
from typing import Optional

import numpy as np

from rsvheat_mm.utils.fileio import atomic_write
from ..geo_io import NODATA_CLASS, GeoTIFFStripWriter
from .reader import nearest_indices

__all__ = ['MaskWriter', 'is_geotiff_path', 'count_values']


def count_values(mask: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``(256, )`` pixels per value of a uint8 map, counted ``chunk`` pixels at a
    time (``np.bincount`` converts its input to int64: 8 bytes per pixel at once)."""
    flat = mask.reshape(-1)
    counts = np.zeros(256, np.int64)
    for start in range(0, flat.size, chunk):
        counts += np.bincount(flat[start:start + chunk], minlength=256)
    return counts


def is_geotiff_path(path: Optional[str]) -> bool:
    return bool(path) and str(path).lower().endswith(('.tif', '.tiff'))


class MaskWriter:
    """Assemble final patches of a ``height x width`` uint8 map into strips and write them.

    Use as a context manager; call :meth:`write` with every patch.

    Args:
        height (int), width (int): Scene size.
        out_file (str, optional): Where to write the map (atomically):
            ``.tif``/``.tiff`` streamed as a GeoTIFF, other extensions
            encoded by OpenCV at the end.
        geo (dict, optional): CRS and transform for the GeoTIFF.
        colormap (dict, optional): GeoTIFF colour table.
        keep (bool): Also keep the whole map in memory (:attr:`mask`).
        preview_side (int, optional): Keep a nearest-neighbour preview of
            at most this many pixels a side (:attr:`preview`).

    Attributes:
        counts (ndarray): ``(256, )`` pixels per value written so far.
        mask (ndarray | None): The map (with ``keep`` or a non-GeoTIFF output).
        preview (ndarray | None): The preview.
    """

    def __init__(self, height: int, width: int, out_file: Optional[str] = None,
                 geo: Optional[dict] = None, colormap: Optional[dict] = None,
                 keep: bool = False, preview_side: Optional[int] = None) -> None:
        self.height, self.width = height, width
        self.out_file = out_file
        self._geotiff = GeoTIFFStripWriter(out_file, height, width, 1, 'uint8', geo,
                                           nodata=NODATA_CLASS, colormap=colormap) \
            if is_geotiff_path(out_file) else None
        keep = keep or (out_file is not None and self._geotiff is None)
        self.mask = np.full((height, width), NODATA_CLASS, np.uint8) if keep else None
        self.counts = np.zeros(256, np.int64)
        self.preview = None
        if preview_side:
            scale = min(1., preview_side / max(height, width))
            ph, pw = max(1, round(height * scale)), max(1, round(width * scale))
            self._prev_rows = nearest_indices(height, ph)
            self._prev_cols = nearest_indices(width, pw)
            self.preview = np.full((ph, pw), NODATA_CLASS, np.uint8)
        self._band: Optional[np.ndarray] = None
        self._band_y0 = 0
        self._filled = 0  # columns of the band received
        self.rows_written = 0

    def __enter__(self) -> 'MaskWriter':
        if self._geotiff is not None:
            self._geotiff.__enter__()
        return self

    def write(self, y0: int, x0: int, patch: np.ndarray) -> None:
        """Add the final ``(h, w)`` patch at rows ``y0:y0 + h``, columns ``x0:x0 + w``
        (patches of a band come left to right and cover its full width)."""
        h, w = patch.shape
        if self._band is None or self._band_y0 != y0 or self._band.shape[0] != h:
            if self._band is not None:
                raise ValueError(f'rows {self._band_y0}.. are incomplete ({self._filled} of '
                                 f'{self.width} columns) when rows {y0}.. start')
            if y0 != self.rows_written:
                raise ValueError(f'patch rows start at {y0}, expected {self.rows_written}')
            self._band = np.empty((h, self.width), np.uint8)
            self._band_y0, self._filled = y0, 0
        if x0 != self._filled:
            raise ValueError(f'patch columns start at {x0}, expected {self._filled}')
        self._band[:, x0:x0 + w] = patch
        self._filled = x0 + w
        if self._filled == self.width:
            self._flush(self._band, y0)
            self._band = None

    def _flush(self, strip: np.ndarray, y0: int) -> None:
        y1 = y0 + strip.shape[0]
        if self._geotiff is not None:
            self._geotiff.write(strip, y0)
        if self.mask is not None:
            self.mask[y0:y1] = strip
        self.counts += count_values(strip)
        if self.preview is not None:
            sel = (self._prev_rows >= y0) & (self._prev_rows < y1)
            if sel.any():
                self.preview[sel] = strip[self._prev_rows[sel] - y0][:, self._prev_cols]
        self.rows_written = y1

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.rows_written != self.height:
            exc = RuntimeError(f'{self.out_file}: {self.rows_written} of {self.height} rows '
                               'were written')
            if self._geotiff is not None:
                self._geotiff.__exit__(RuntimeError, exc, None)  # drops the temporary file
            raise exc
        if self._geotiff is not None:
            self._geotiff.__exit__(exc_type, exc, tb)  # renames onto out_file if no error
        elif exc_type is None and self.out_file:
            import cv2
            ok, buf = cv2.imencode(osp.splitext(self.out_file)[1], self.mask)
            if not ok:
                raise ValueError(f'could not encode {self.out_file} (unknown image extension?)')
            atomic_write(buf.tobytes(), self.out_file)
        return False

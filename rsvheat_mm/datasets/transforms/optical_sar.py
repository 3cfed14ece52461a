"""Loading a co-registered optical + SAR pair as one channel-stacked image."""
import io
import os.path as osp
from typing import Optional, Sequence

import mmcv
import mmengine.fileio as fileio
import numpy as np
import tifffile
from mmcv.transforms import BaseTransform

from rsvheat_mm.registry import TRANSFORMS

_TIFF_SUFFIXES = ('.tif', '.tiff')


def read_bands(path: str, backend_args: Optional[dict] = None) -> np.ndarray:
    """Read an image file as ``(H, W, bands)`` in the file's band order.

    GeoTIFFs are read with tifffile (any band count and dtype, pixel- or
    band-interleaved); other formats with OpenCV, 3/4-channel images
    converted from OpenCV's BGR(A) to RGB(A) so that band 0 is always the
    first band as stored.
    """
    content = fileio.get(path, backend_args=backend_args)
    if osp.splitext(path)[1].lower() in _TIFF_SUFFIXES:
        with tifffile.TiffFile(io.BytesIO(content)) as tif:
            arr = tif.asarray()
            axes = tif.series[0].axes
        if arr.ndim == 3 and axes[-1] not in 'SC':  # band-interleaved (C, H, W)
            arr = np.moveaxis(arr, 0, -1)
    else:
        arr = mmcv.imfrombytes(content, flag='unchanged', backend='cv2')
        if arr is None:
            raise ValueError(f'cannot decode image file {path}')
        if arr.ndim == 3 and arr.shape[2] in (3, 4):
            arr = np.concatenate([arr[..., 2::-1], arr[..., 3:]], axis=2)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f'{path}: expected a (H, W[, bands]) image, got shape {arr.shape}')
    return arr


def _select(arr: np.ndarray, bands: Optional[Sequence[int]], path: str, what: str):
    if bands is None:
        return arr
    bad = [b for b in bands if not -arr.shape[2] <= b < arr.shape[2]]
    if bad:
        raise IndexError(f'{path}: {what} {list(bands)} asks for band(s) {bad}, but '
                         f'the file has {arr.shape[2]}')
    return arr[..., list(bands)]


@TRANSFORMS.register_module()
class LoadOpticalSARPair(BaseTransform):
    """Load a co-registered optical and SAR image into one ``img``.

    The optical bands come first, then the SAR bands, so every later
    spatial transform (resize, crop, flip, rotate) moves both modalities
    together and stays co-registered; the multimodal segmentor splits the
    channels again by the backbone's stem band counts.

    Required keys: ``img_path`` (optical), ``sar_path``.
    Added keys: ``img`` (H, W, optical + SAR bands), ``img_shape``,
    ``ori_shape``.

    Args:
        optical_bands (Sequence[int], optional): Bands kept from the optical
            file, in the order given (e.g. ``(0, 1, 2)`` drops NIR from an
            R-G-B-NIR file). None keeps all. Defaults to None.
        sar_bands (Sequence[int], optional): Bands kept from the SAR file.
            None keeps all. Defaults to None.
        to_float32 (bool): Cast to float32 (otherwise both must share a
            dtype, which they keep). Defaults to False.
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self,
                 optical_bands: Optional[Sequence[int]] = None,
                 sar_bands: Optional[Sequence[int]] = None,
                 to_float32: bool = False,
                 backend_args: Optional[dict] = None):
        self.optical_bands = None if optical_bands is None else list(optical_bands)
        self.sar_bands = None if sar_bands is None else list(sar_bands)
        self.to_float32 = to_float32
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        opt_path, sar_path = results['img_path'], results['sar_path']
        opt = _select(read_bands(opt_path, self.backend_args), self.optical_bands,
                      opt_path, 'optical_bands')
        sar = _select(read_bands(sar_path, self.backend_args), self.sar_bands,
                      sar_path, 'sar_bands')
        if opt.shape[:2] != sar.shape[:2]:
            raise ValueError(f'optical {opt_path} is {opt.shape[0]}x{opt.shape[1]} but SAR '
                             f'{sar_path} is {sar.shape[0]}x{sar.shape[1]}; a pair must be '
                             'co-registered on the same grid')
        if self.to_float32:
            opt, sar = opt.astype(np.float32), sar.astype(np.float32)
        elif opt.dtype != sar.dtype:
            raise TypeError(f'optical {opt_path} is {opt.dtype} but SAR {sar_path} is '
                            f'{sar.dtype}; set to_float32=True to stack them')
        img = np.concatenate([opt, sar], axis=2)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(optical_bands={self.optical_bands}, '
                f'sar_bands={self.sar_bands}, to_float32={self.to_float32})')

"""Scenes for inference: test pipelines without file loaders, window readers.

Shared by :class:`~rsvheat_mm.apis.inferencer.RSVHeatInferencer` and the
tiled segmentation: a config's test pipeline is split into its image loader
(which says how to decode a file: ``color_type``, ...) and the transforms
after it; images then come from :class:`SceneReader`, which reads GeoTIFFs
and other GDAL rasters window by window with rasterio (through the raster
equivalent of the config's loader, see
:func:`~rsvheat_mm.datasets.transforms.geotiff.loader_for_raster`), decodes
other files once with the config's own loader, or slices an array.
Toolbox-free: toolbox transforms are built in the config's scope by the
caller.
"""
import copy
import os
from typing import List, Optional, Tuple

import numpy as np

from .geo_io import is_raster_path, read_georef

__all__ = [
    'get_test_pipeline_cfg', 'split_test_pipeline', 'SceneReader', 'blend_weights',
    'window_results', 'group_rows'
]

# Transforms that need annotations, which inference inputs do not have.
_ANNOTATION_TRANSFORMS = ('LoadAnnotations', 'LoadPanopticAnnotations', 'ConvertBoxType',
                          'LoadBitemporalChangeLabel', 'LoadDepthAnnotation',
                          'GeoRasterNodataToIgnore', 'FilterAnnotations')


def _short(type_name) -> str:
    return type_name.split('.')[-1] if isinstance(type_name, str) else type_name.__name__


def get_test_pipeline_cfg(cfg) -> list:
    """The test pipeline of a config (``test_dataloader``, else ``val_dataloader``;
    wrapped datasets such as ``ConcatDataset`` / ``RepeatDataset`` followed)."""
    for key in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(key)
        if not loader:
            continue
        dataset = loader.get('dataset')
        while dataset is not None and 'pipeline' not in dataset:
            if 'dataset' in dataset:
                dataset = dataset['dataset']
            elif dataset.get('datasets'):
                dataset = dataset['datasets'][0]
            else:
                dataset = None
        if dataset is not None:
            return copy.deepcopy(list(dataset['pipeline']))
    if cfg.get('test_pipeline'):
        return copy.deepcopy(list(cfg['test_pipeline']))
    raise KeyError('the config has no test pipeline (test_dataloader.dataset.pipeline, '
                   'val_dataloader.dataset.pipeline or test_pipeline)')


def split_test_pipeline(cfg) -> Tuple[dict, list]:
    """``(loader_cfg, rest)``: the image loader of the test pipeline and the
    transforms after it, annotation loaders removed."""
    pipeline = get_test_pipeline_cfg(cfg)
    loaders = [t for t in pipeline if _short(t['type']).startswith('Load')
               and _short(t['type']) not in _ANNOTATION_TRANSFORMS]
    if not loaders:
        raise ValueError('the test pipeline has no image loader (a `Load*` transform), got '
                         f'{[t["type"] for t in pipeline]}')
    rest = [t for t in pipeline if t is not loaders[0]
            and _short(t['type']) not in _ANNOTATION_TRANSFORMS]
    if any(_short(t['type']).startswith('Load') for t in rest):
        raise ValueError('the test pipeline loads more than one image '
                         f'({[t["type"] for t in pipeline]}); pass dict inputs with the '
                         'keys its loader needs')
    return dict(loaders[0]), rest


def blend_weights(h: int, w: int, blend: str = 'gaussian') -> np.ndarray:
    """Weights of a window's pixels when overlapping windows are averaged.

    ``'mean'``: all 1. ``'gaussian'``: sigma = 1/4 of the window, centre 1,
    never below 1e-3 (a scene border covered by one window keeps its value);
    windows are least reliable at their borders, where context is missing.
    """
    if blend == 'mean':
        return np.ones((h, w), np.float32)
    if blend == 'gaussian':
        gy = np.exp(-0.5 * ((np.arange(h) - (h - 1) / 2) / (h / 4)) ** 2)
        gx = np.exp(-0.5 * ((np.arange(w) - (w - 1) / 2) / (w / 4)) ** 2)
        return np.maximum(np.outer(gy, gx), 1e-3).astype(np.float32)
    raise ValueError(f"blend must be 'mean' or 'gaussian', got {blend!r}")


class SceneReader:
    """Windows of one scene, read the way the config's loader would read the file.

    Args:
        image (str | ndarray): A raster path (GeoTIFF, ...; read per window
            with rasterio), another image path (decoded once by
            ``file_loader``), or an array as the config's loader would give it.
        raster_loader (LoadGeoRasterFromFile, optional): Reads windows of
            rasters (see :func:`~rsvheat_mm.datasets.transforms.geotiff.loader_for_raster`);
            None: rasters are decoded whole by ``file_loader``.
        file_loader (callable, optional): The built loader transform of the
            config, for other files (required for them).
    """

    def __init__(self, image, raster_loader=None, file_loader=None):
        self.path: Optional[str] = None
        self.geo: Optional[dict] = None
        self._array: Optional[np.ndarray] = None
        self._raster = None
        if isinstance(image, np.ndarray):
            if image.ndim not in (2, 3):
                raise ValueError(f'image arrays must be (H, W[, C]), got {image.shape}')
            self._array = image
        elif isinstance(image, (str, os.PathLike)):
            self.path = os.fspath(image)
            if not os.path.isfile(self.path):
                raise FileNotFoundError(f'input image not found: {self.path}')
            if is_raster_path(self.path):
                self.geo = read_georef(self.path)
                self._raster = raster_loader
            if self._raster is None:  # plain image, or a loader that reads rasters itself
                if file_loader is None:
                    raise ValueError(f'{self.path}: no loader to decode it with')
                results = file_loader(dict(img_path=self.path, img_id=0))
                if results is None:
                    raise ValueError(f'cannot decode input image {self.path}')
                self._array = results['img']
        else:
            raise TypeError(f'an image is a path or an array, got {type(image).__name__}')
        if self._array is not None:
            self.height, self.width = self._array.shape[:2]
        else:
            self.height, self.width = self.geo['height'], self.geo['width']

    def read(self, window: Tuple[int, int, int, int]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """``(img, nodata_mask or None)`` of the window ``(x0, y0, x1, y1)``."""
        x0, y0, x1, y1 = window
        if self._raster is not None:
            img, mask, _ = self._raster.load(self.path, window)
            return img, mask
        return np.ascontiguousarray(self._array[y0:y1, x0:x1]), None

    def read_all(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        return self.read((0, 0, self.width, self.height))


def window_results(img: np.ndarray, window, path: Optional[str], index: int) -> dict:
    """The results dict a window enters the post-loader pipeline with."""
    h, w = img.shape[:2]
    return dict(img=img, img_shape=(h, w), ori_shape=(h, w), img_path=path,
                img_id=f'{window[0]}_{window[1]}' if window else index,
                window=tuple(window) if window else None, seg_fields=[])


def group_rows(windows: List[Tuple[int, int, int, int]]):
    """Windows grouped by their top row, in order: ``[(y0, [windows]), ...]``."""
    rows = {}
    for win in windows:
        rows.setdefault(win[1], []).append(win)
    return sorted(rows.items())

"""The config's test pipeline, split for scenes, and windows run through it in batches.

A config's test pipeline starts with a loader that decodes a file
(``LoadImageFromFile``, ``LoadBitemporalImages``, ``LoadGeoRasterFromFile``
...). For scenes the loader part becomes a :class:`~.reader.SceneReader`
(rasters read window by window, other files decoded once) and the transforms
after it run on every window, so windows are resized, normalised and packed
exactly as in validation, and the model's ``test_cfg`` applies as there.
Annotation loaders are dropped (inference inputs have no labels).

:class:`WindowPipeline` is the only place that builds these parts, for
whole images and for tiled scenes of every task.
"""
import copy
import importlib
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from mmengine.dataset import pseudo_collate

from rsvheat_mm.datasets.transforms.geotiff import LoadGeoRasterFromFile, raster_loader_cfg
from .reader import PATH_KEYS, SceneReader, WindowData

__all__ = [
    'get_test_pipeline_cfg', 'split_test_pipeline', 'register_toolbox', 'WindowPipeline',
    'WindowPrediction'
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


def register_toolbox(scope: str) -> None:
    """Import a toolbox and register all its modules, as its own tools do
    (mmrotate's registries have no ``locations`` to import them lazily)."""
    importlib.import_module(scope)
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)


class WindowPrediction(NamedTuple):
    """The model's data sample for one window and the window's nodata masks
    (see :class:`~.reader.WindowData`)."""
    window: Tuple[int, int, int, int]
    sample: object
    nodata: Optional[object]
    nonfinite: Optional[object]


class WindowPipeline:
    """A config's test pipeline for scenes: loaders to read them, transforms per window.

    Args:
        cfg (Config): A model config (its ``default_scope`` names the toolbox).
        raster_loader (dict | LoadGeoRasterFromFile, optional): How rasters
            are read: overrides merged into the raster equivalent of the
            config's loader (e.g. ``dict(bands=(2, 1, 0))``), or a built
            loader. NaN/Inf pixels count as nodata unless the overrides say
            ``nonfinite='error'``.

    Attributes:
        loader_cfg (dict): The config's image loader.
        file_loader: That loader, built (decodes non-raster files).
        raster_loader (LoadGeoRasterFromFile | None): Reads raster windows;
            None when the config's loader reads several files its own way
            (rasters are then decoded whole by ``file_loader``).
        transforms (Compose): The transforms after the loader.
    """

    def __init__(self, cfg, raster_loader: Union[dict, LoadGeoRasterFromFile, None] = None):
        from mmcv.transforms import Compose
        from mmengine.registry import TRANSFORMS, DefaultScope
        scope = cfg.get('default_scope')
        if scope:
            register_toolbox(scope)
        self.loader_cfg, rest = split_test_pipeline(cfg)
        with DefaultScope.overwrite_default_scope(scope):
            self.file_loader = TRANSFORMS.build(copy.deepcopy(self.loader_cfg))
            self.transforms = Compose(rest)
        if isinstance(raster_loader, LoadGeoRasterFromFile):
            self.raster_loader = raster_loader
        else:
            raster_cfg = raster_loader_cfg(self.loader_cfg)
            if raster_loader:
                raster_cfg = dict(raster_cfg or dict(type='LoadGeoRasterFromFile'),
                                  **raster_loader)
            self.raster_loader = None
            if raster_cfg:
                # the reader reads each image of a scene on its own: the
                # single-image loader with the same arguments serves pairs too
                raster_cfg = {k: v for k, v in raster_cfg.items() if k not in ('type', 'key2')}
                raster_cfg.setdefault('nonfinite', 'nodata')
                self.raster_loader = LoadGeoRasterFromFile(**raster_cfg)

    def reader(self, scene) -> SceneReader:
        """A :class:`~.reader.SceneReader` of ``scene`` (a path, an array, co-registered
        paths or a dict of data-info keys) reading like the config's loader."""
        return SceneReader(scene, self.raster_loader, self.file_loader)

    @staticmethod
    def results(data: WindowData, reader: SceneReader, window=None, index: int = 0) -> dict:
        """The results dict a window (None: the whole scene) enters the transforms with."""
        h, w = data.img.shape[:2]
        results = dict(reader.extra)
        results.update(img=data.img, img_shape=(h, w), ori_shape=(h, w),
                       img_id=f'{window[0]}_{window[1]}' if window else index,
                       window=tuple(window) if window else None, seg_fields=[])
        for key, path in zip(PATH_KEYS, reader.paths):
            results[key] = path
        results.setdefault('img_path', None)
        if data.nodata is not None:
            results['nodata_mask'] = data.nodata
        if reader.geo is not None:
            results.setdefault('geo', reader.geo)
        return results

    def __call__(self, results: dict) -> dict:
        """Run the transforms after the loader on ``results``."""
        return self.transforms(results)

    @torch.no_grad()
    def predict(self, model, reader: SceneReader, windows: Sequence, batch_size: int = 1,
                collate_fn: Optional[Callable] = None,
                progress: bool = False) -> Iterator[WindowPrediction]:
        """Run ``model.test_step`` on ``windows`` of ``reader``, ``batch_size`` at a
        time; yields one :class:`WindowPrediction` per window, in order."""
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        collate_fn = collate_fn or pseudo_collate
        bar = None
        if progress:
            from mmengine.utils import ProgressBar
            bar = ProgressBar(len(windows))
        batch: List[Tuple[tuple, WindowData, dict]] = []

        def run():
            samples = model.test_step(collate_fn([b[2] for b in batch]))
            for (win, data, _), sample in zip(batch, samples):
                if bar is not None:
                    bar.update()
                yield WindowPrediction(win, sample, data.nodata, data.nonfinite)

        for k, win in enumerate(windows):
            data = reader.read(win)
            batch.append((win, data, self(self.results(data, reader, win, k))))
            if len(batch) == batch_size:
                yield from run()
                batch = []
        if batch:
            yield from run()
        if bar is not None:
            bar.file.write('\n')  # the bar ends its line itself only in some versions
            bar.file.flush()

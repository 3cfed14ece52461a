"""One inference API for every rsvheat_mm task: images, folders, huge (Geo)TIFF scenes.

:class:`RSVHeatInferencer` follows the toolboxes' inferencers
(``mmpretrain.ImageClassificationInferencer``, ``mmseg.MMSegInferencer``,
``mmdet.DetInferencer``, all :class:`mmengine.infer.BaseInferencer`): build it
from a config (file, ``Config``, a model name of ``model-index.yml``, or
nothing but a checkpoint that stores its config) and call it::

    from rsvheat_mm.apis import RSVHeatInferencer
    inferencer = RSVHeatInferencer(
        'configs/demo/upernet_rsvheat-demo_1xb2-40iter_loveda-samples-256x256.py',
        weights='work_dirs/demo/seg/iter_40.pth')
    result = inferencer('scene.tif', out_dir='outputs/')              # one image
    result = inferencer('folder/', out_dir='outputs/', batch_size=4)  # a folder
    result = inferencer('huge_scene.tif', out_dir='outputs/', tile=1024, overlap=128)

The task comes from the config: ``default_scope`` mmpretrain -> scene
classification, mmseg -> semantic segmentation (change detection for
bi-temporal models, whose inputs are ``(img_a, img_b)`` pairs or a folder with
``A/`` and ``B/``), mmdet -> horizontal and mmrotate -> rotated detection.

GeoTIFFs and other GDAL rasters are read with rasterio through the raster
equivalent of the config's loader (any band count and dtype; nodata masked);
predictions on them keep the source CRS and transform: class and change
masks as GeoTIFF (``255`` = nodata, palette as colour table), detections as
GeoJSON polygons in the source CRS. With ``tile`` (or automatically for
scenes above :attr:`RSVHeatInferencer.auto_tile_pixels`) a scene is cut into
overlapping windows: segmentation blends window probabilities strip by strip
(:func:`~rsvheat_mm.apis.seg_tiled_inference.inference_segmentor_tiled`),
detection merges window boxes with NMS
(:func:`~rsvheat_mm.apis.det_tiled_inference.inference_detector_tiled`),
change detection blends the pair's windows
(:func:`~rsvheat_mm.apis.cd_tiled_inference.inference_change_pair_tiled`),
classification labels every window (a land-use grid).

Outputs under ``out_dir``: ``vis/<name>.jpg`` (drawn by the config's
visualizer) and ``preds/<name>.{json,geojson,tif,png}``, all written
atomically.
"""
import copy
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.fileio import load
from mmengine.infer import BaseInferencer
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint

from rsvheat_mm.datasets.transforms.geotiff import (LoadGeoRasterFromFile, loader_for_raster,
                                                    raster_loader_cfg)
from rsvheat_mm.registry import INFERENCERS
from rsvheat_mm.utils.fileio import atomic_write
from rsvheat_mm.utils.tiling import sliding_windows
from .geo_io import (NODATA_CLASS, colormap_from_palette, detections_to_geojson,
                     display_rgb, is_georeferenced, is_raster_path, read_georef,
                     write_geotiff, write_json)
from .scene import SceneReader, split_test_pipeline, window_results

__all__ = ['RSVHeatInferencer', 'task_of_config', 'TASKS']

TASKS = ('classification', 'segmentation', 'change_detection', 'detection',
         'rotated_detection')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm',
                  '.pgm', '.jp2', '.vrt', '.img')
_SCOPE_TASK = {'mmpretrain': 'classification', 'mmseg': 'segmentation',
               'mmdet': 'detection', 'mmrotate': 'rotated_detection'}
_PAIR_DIRS = (('A', 'B'), ('a', 'b'), ('im1', 'im2'), ('t1', 't2'), ('T1', 'T2'),
              ('time1', 'time2'), ('before', 'after'))


def _short(type_name) -> str:
    return type_name.split('.')[-1] if isinstance(type_name, str) else type_name.__name__


def task_of_config(cfg) -> str:
    """The task of a config: one of :data:`TASKS`.

    From ``default_scope`` (mmpretrain, mmseg, mmdet, mmrotate); mmseg models
    with a ``fusion_neck`` (siamese, bi-temporal) are change detectors.
    """
    scope = cfg.get('default_scope')
    model = cfg.get('model') or {}
    if scope not in _SCOPE_TASK:
        raise ValueError(f'cannot tell the task of a config with default_scope={scope!r}; '
                         f'RSVHeatInferencer supports {sorted(_SCOPE_TASK)}')
    mtype = _short(model.get('type', ''))
    if scope == 'mmpretrain' and mtype != 'ImageClassifier':
        raise ValueError(f'{mtype} (an mmpretrain model that is not an ImageClassifier, '
                         'e.g. a self-supervised pretraining model) makes no predictions '
                         'to infer; use a downstream config')
    if scope == 'mmseg' and ('fusion_neck' in model or mtype.startswith('CD')):
        return 'change_detection'
    return _SCOPE_TASK[scope]


def _register_toolbox(scope: str) -> None:
    """Import the toolbox (rsvheat_mm's plugin modules follow) and register
    all its modules, as its own tools do (mmrotate's registries have no
    ``locations``)."""
    import importlib
    importlib.import_module(scope)
    utils = importlib.import_module(f'{scope}.utils')
    utils.register_all_modules(init_default_scope=False)


def repo_or_mim_dir() -> str:
    """Where ``configs/`` and ``model-index.yml`` are: the repository of an
    editable install, else the package's ``.mim`` folder (``mim``-installed)."""
    import rsvheat_mm
    package = osp.dirname(osp.abspath(rsvheat_mm.__file__))
    repo = osp.dirname(package)
    if osp.isfile(osp.join(repo, 'model-index.yml')) and osp.isdir(osp.join(repo, 'configs')):
        return repo
    mim = osp.join(package, '.mim')
    if osp.isfile(osp.join(mim, 'model-index.yml')):
        return mim
    raise FileNotFoundError(f'neither {repo} nor {mim} holds model-index.yml and configs/; '
                            'install rsvheat_mm from its repository (pip install -e .) or '
                            'with mim')


def _models_from_index(root: str):
    index = load(osp.join(root, 'model-index.yml'))
    for meta_path in index['Import']:
        yield from load(osp.join(root, meta_path))['Models']


@INFERENCERS.register_module()
class RSVHeatInferencer(BaseInferencer):
    """Inference with any rsvheat_mm model (classification, segmentation,
    change detection, horizontal and rotated detection).

    Args:
        model (str | Config | dict, optional): Config file, ``Config``, or a
            model name / alias from ``model-index.yml``. None: the config
            stored in the ``weights`` checkpoint.
        weights (str, optional): Checkpoint. Without it the model keeps its
            random initialisation (a warning says so).
        device (str, optional): ``'cpu'``, ``'cuda:0'``, ...; default: CUDA
            when available.
        cfg_options (dict, optional): Config overrides (dotted keys), as
            ``--cfg-options`` of the tools.
        palette (list, optional): Colours of the classes (segmentation);
            default: the dataset's, else a fixed random palette.
        raster_loader (dict, optional): Overrides of how GeoTIFFs are read,
            arguments of :class:`~rsvheat_mm.datasets.transforms.LoadGeoRasterFromFile`
            merged into the raster equivalent of the config's loader, e.g.
            ``dict(bands=(3, 2, 1), norm=dict(type='range', min=0, max=3000))``
            to run an RGB model on R, G, B of a 12-bit multispectral scene.
        show_progress (bool): Progress bar over batches. Defaults to True.
    """

    preprocess_kwargs: set = set()
    forward_kwargs: set = set()
    visualize_kwargs: set = {
        'show', 'wait_time', 'draw_pred', 'pred_score_thr', 'vis_bands', 'opacity',
        'return_vis', 'vis_dir'
    }
    postprocess_kwargs: set = {'print_result', 'pred_dir'}

    #: Scenes with more pixels than this are tiled when ``tile`` is not given
    #: (16.7 Mpx, a 4096 x 4096 scene: its logits alone would take
    #: hundreds of MB per class).
    auto_tile_pixels: int = 4096 * 4096
    #: Window size and overlap of automatic tiling.
    auto_tile: Tuple[int, int] = (1024, 128)
    #: Scenes above this many pixels are not drawn (the prediction file is the output).
    max_vis_pixels: int = 8192 * 8192

    def __init__(self,
                 model: Union[str, Config, ConfigDict, dict, None] = None,
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 cfg_options: Optional[dict] = None,
                 palette: Optional[Sequence] = None,
                 raster_loader: Optional[dict] = None,
                 show_progress: bool = True) -> None:
        import rsvheat_mm  # noqa: F401  (registration, safe checkpoint loading)
        self._checkpoint = None  # loaded early when the config comes from it
        self._checkpoint_meta = {}
        cfg, weights = self._resolve_config(model, weights)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        self.task = task_of_config(cfg)
        scope = cfg.get('default_scope')
        _register_toolbox(scope)
        init_default_scope(scope)
        self._user_palette = palette
        self._raster_overrides = dict(raster_loader or {})
        super().__init__(model=cfg, weights=weights, device=device, scope=scope,
                         show_progress=show_progress)
        device = next(self.model.parameters()).device
        if device.type == 'cpu':
            from mmengine.model import revert_sync_batchnorm
            self.model = revert_sync_batchnorm(self.model)
        self.dataset_meta = self._resolve_dataset_meta(cfg)
        self.model.dataset_meta = self.dataset_meta
        if self.visualizer is not None:
            if hasattr(self.visualizer, 'set_dataset_meta'):  # mmseg
                self.visualizer.set_dataset_meta(self.dataset_meta.get('classes'),
                                                 self.dataset_meta.get('palette'))
            else:
                self.visualizer.dataset_meta = self.dataset_meta

    # -- model and config ----------------------------------------------------------------
    def _resolve_config(self, model, weights) -> Tuple[Config, Optional[str]]:
        if isinstance(model, str):
            if osp.isfile(model):
                return Config.fromfile(model), weights
            cfg, index_weights = self._load_model_from_metafile(model)
            return cfg, weights if weights is not None else index_weights
        if isinstance(model, Config):
            return copy.deepcopy(model), weights
        if isinstance(model, ConfigDict):
            return Config(copy.deepcopy(model.to_dict())), weights
        if isinstance(model, dict):
            return Config(copy.deepcopy(model)), weights
        if model is None:
            if weights is None:
                raise ValueError('give a config (model=...) or a checkpoint (weights=...) '
                                 'that stores its config')
            self._checkpoint = _load_checkpoint(weights, map_location='cpu')
            try:
                cfg_string = self._checkpoint['message_hub']['runtime_info']['cfg']
            except (KeyError, TypeError):
                cfg_string = (self._checkpoint.get('meta') or {}).get('cfg')
            if not cfg_string:
                raise ValueError(f'{weights} stores no config (message_hub/meta); pass '
                                 'model=CONFIG')
            return Config.fromstring(cfg_string, file_format='.py'), weights
        raise TypeError(f'model must be a config path, a model name, a Config or a dict, '
                        f'got {type(model).__name__}')

    def _load_model_from_metafile(self, model: str) -> Tuple[Config, Optional[str]]:
        """Config (and weights, if released) of a model name or alias of
        ``model-index.yml``."""
        root = repo_or_mim_dir()
        name = model.lower()
        for entry in _models_from_index(root):
            aliases = entry.get('Alias') or []
            aliases = [aliases] if isinstance(aliases, str) else aliases
            if name == entry['Name'].lower() or name in [a.lower() for a in aliases]:
                weights = entry.get('Weights')
                weights = weights[0] if isinstance(weights, list) else weights
                return Config.fromfile(osp.join(root, entry['Config'])), weights
        raise ValueError(f'{model!r} is neither a config file nor a model of '
                         f'{osp.join(root, "model-index.yml")} (see '
                         'RSVHeatInferencer.list_models())')

    @staticmethod
    def list_models(scope: Optional[str] = None, patterns: str = r'.*') -> List[str]:
        """Names of the models in ``model-index.yml`` matching ``patterns``
        (and, with ``scope``, whose config has that ``default_scope``)."""
        import re
        root = repo_or_mim_dir()
        names = []
        for entry in _models_from_index(root):
            if scope is not None:
                cfg_scope = Config.fromfile(osp.join(root, entry['Config'])).get('default_scope')
                if cfg_scope != scope:
                    continue
            if re.match(patterns, entry['Name']):
                names.append(entry['Name'])
        return names

    def _init_model(self, cfg, weights, device='cpu'):
        # mmpretrain configs keep the data preprocessor at the top level (the
        # Runner moves it into the model); do the same.
        if cfg.get('data_preprocessor') is not None and cfg.model.get('data_preprocessor') is None:
            cfg.model.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
        # Test-time models need no training-time settings (mmseg's init_model).
        if self.task in ('segmentation', 'change_detection'):
            cfg.model.train_cfg = None
        if self._checkpoint is not None:  # already loaded to read its config
            from mmengine.registry import MODELS
            model = MODELS.build(cfg.model)
            model.cfg = cfg
            self._load_weights_to_model(model, self._checkpoint, cfg)
            self._checkpoint = None
            return model.to(device).eval()
        return super()._init_model(cfg, weights, device)

    def _load_weights_to_model(self, model, checkpoint, cfg) -> None:
        super()._load_weights_to_model(model, checkpoint, cfg)
        meta = (checkpoint or {}).get('meta') or {}
        if meta.get('dataset_meta'):
            self._checkpoint_meta = dict(meta['dataset_meta'])

    def _resolve_dataset_meta(self, cfg) -> dict:
        """Classes and palette: the checkpoint's, else the config's test
        dataset (class ``METAINFO`` + ``metainfo``/``classes`` arguments),
        else ``class_<i>``."""
        meta = {}
        dataset = None
        try:
            dataset = cfg.test_dataloader.dataset
            while 'pipeline' not in dataset and ('dataset' in dataset or 'datasets' in dataset):
                dataset = dataset['dataset'] if 'dataset' in dataset else dataset['datasets'][0]
        except (AttributeError, KeyError, TypeError):
            dataset = None
        if dataset is not None:
            import importlib

            # The toolbox's registry: mmengine's root one does not search its children.
            registry = importlib.import_module(f'{self.scope}.registry').DATASETS
            try:
                cls = registry.get(dataset.get('type'))
            except Exception:  # noqa: BLE001 - an unknown dataset only loses names
                cls = None
            meta.update(copy.deepcopy(getattr(cls, 'METAINFO', None) or {}))
            meta.update(copy.deepcopy(dict(dataset.get('metainfo') or {})))
            classes = dataset.get('classes')
            if isinstance(classes, str):  # a class-name file (mmpretrain)
                if osp.isfile(classes):
                    with open(classes) as f:
                        classes = [ln.strip() for ln in f if ln.strip()]
                else:
                    classes = None
            if classes:
                meta['classes'] = tuple(classes)
        meta.update(self._checkpoint_meta)
        num_classes = self._num_classes()
        if not meta.get('classes') and num_classes:
            meta['classes'] = tuple(f'class_{i}' for i in range(num_classes))
        if self._user_palette is not None:
            meta['palette'] = [list(c) for c in self._user_palette]
        if meta.get('classes') and not meta.get('palette'):
            rng = np.random.RandomState(42)  # mmseg's choice for unknown palettes
            meta['palette'] = rng.randint(0, 255, (len(meta['classes']), 3)).tolist()
        return meta

    def _num_classes(self) -> Optional[int]:
        model = self.model
        for path in (('head', 'num_classes'), ('decode_head', 'num_classes'),
                     ('roi_head', 'bbox_head', 'num_classes'), ('bbox_head', 'num_classes')):
            obj = model
            for attr in path:
                obj = getattr(obj, attr, None)
            if isinstance(obj, int):
                return obj
        return None

    def _init_collate(self, cfg):
        # The toolboxes have no FUNCTIONS registry of their own: look the
        # config's collate function up in mmengine's (pseudo_collate if none).
        from mmengine.registry import FUNCTIONS
        collate = (cfg.get('test_dataloader') or {}).get('collate_fn')
        if not collate:
            return pseudo_collate
        name = collate['type'] if isinstance(collate, dict) else collate
        fn = FUNCTIONS.get(name) if isinstance(name, str) else name
        if fn is None:
            raise KeyError(f'test_dataloader.collate_fn {name!r} is not a registered function')
        return fn

    # -- pipeline --------------------------------------------------------------------------
    def _init_pipeline(self, cfg):
        from mmcv.transforms import Compose
        from mmengine.registry import TRANSFORMS
        self.loader_cfg, rest = split_test_pipeline(cfg)
        self.file_loader = TRANSFORMS.build(copy.deepcopy(self.loader_cfg))
        # GeoTIFFs through rasterio (None: the config's loader reads rasters itself)
        raster_cfg = raster_loader_cfg(self.loader_cfg)
        if self._raster_overrides:
            raster_cfg = dict(raster_cfg or dict(type='LoadGeoRasterFromFile'),
                              **self._raster_overrides)
        self.raster_loader = loader_for_raster(raster_cfg) if raster_cfg else None
        return Compose(rest)

    def _channel_order(self, raster: bool) -> str:
        """Channel order of loaded images (for drawing): OpenCV-style loaders
        give BGR (3 bands); raster loaders with ``color_type='unchanged'``
        the file's order."""
        loader = self.raster_loader if raster else self.file_loader
        if isinstance(loader, LoadGeoRasterFromFile) and loader.color_type == 'unchanged':
            return 'rgb'
        return 'bgr'

    def _load(self, item, index: int) -> Tuple[dict, dict]:
        """Run the loader stage on one input: ``(results, info)``."""
        info = dict(index=index, path=None, geo=None,
                    channel_order=self._channel_order(raster=False))
        if isinstance(item, np.ndarray):
            if item.ndim not in (2, 3):
                raise ValueError(f'input array {index} must be (H, W[, C]), got {item.shape}')
            img = item
            results = dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                           img_path=None, img_id=index)
            if self.task == 'change_detection':
                if img.ndim != 3 or img.shape[2] % 2:
                    raise ValueError('change-detection array inputs are (H, W, 2C) stacks of '
                                     f'both dates, got {img.shape}')
                results['date_channels'] = img.shape[2] // 2
            info['name'] = f'{index:08d}'
            return results, info
        if isinstance(item, dict):
            results = dict(item)
        elif self.task == 'change_detection':
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError('change detection takes (img_a, img_b) pairs, a dict with '
                                 f'img_path/img_path2, or a folder with A/ and B/; got {item!r}')
            results = dict(img_path=os.fspath(item[0]), img_path2=os.fspath(item[1]))
        elif isinstance(item, (str, os.PathLike)):
            results = dict(img_path=os.fspath(item))
        else:
            raise TypeError(f'unsupported input {type(item).__name__}: give a path, an array, '
                            'a dict of data-info keys or (for change detection) a pair')
        results.setdefault('img_id', index)
        paths = [v for k, v in results.items() if k.endswith('path') or k.endswith('path2')]
        for p in paths:
            if isinstance(p, str) and not osp.isfile(p):
                raise FileNotFoundError(f'input image not found: {p}')
        path = results.get('img_path')
        info.update(path=path, name=osp.splitext(osp.basename(path))[0] if path else
                    f'{index:08d}')
        if 'img_path2' in results:
            info['pair'] = (path, results['img_path2'])
        if self.raster_loader is not None and path and \
                all(is_raster_path(p) for p in paths):
            loaded = self.raster_loader(results)
            info['geo'] = loaded.get('geo')
            info['channel_order'] = self._channel_order(raster=True)
        else:
            loaded = self.file_loader(results)
            if loaded is None:
                raise ValueError(f'could not load input {item!r}')
        return loaded, info

    def preprocess(self, inputs: list, batch_size: int = 1, **kwargs):
        """Yield ``(collated batch, infos)`` for batches of inputs."""
        chunk = []
        for i, item in enumerate(inputs):
            results, info = self._load(item, i)
            info['display'] = results['img']
            info['nodata_mask'] = results.get('nodata_mask')
            chunk.append((self.pipeline(results), info))
            if len(chunk) == batch_size:
                yield self.collate_fn([c[0] for c in chunk]), [c[1] for c in chunk]
                chunk = []
        if chunk:
            yield self.collate_fn([c[0] for c in chunk]), [c[1] for c in chunk]

    # -- inputs ----------------------------------------------------------------------------
    def _inputs_to_list(self, inputs) -> list:
        if isinstance(inputs, (str, os.PathLike)) and osp.isdir(inputs):
            folder = os.fspath(inputs)
            if self.task == 'change_detection':
                return self._pairs_in(folder)
            files = sorted(f for f in os.listdir(folder)
                           if f.lower().endswith(IMAGE_SUFFIXES)
                           and osp.isfile(osp.join(folder, f)))
            if not files:
                raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
            return [osp.join(folder, f) for f in files]
        if self.task == 'change_detection' and isinstance(inputs, tuple) and len(inputs) == 2 \
                and all(isinstance(p, (str, os.PathLike)) for p in inputs):
            return [inputs]
        if isinstance(inputs, (list, tuple)):
            return list(inputs)
        return [inputs]

    @staticmethod
    def _pairs_in(folder: str) -> list:
        for a, b in _PAIR_DIRS:
            dir_a, dir_b = osp.join(folder, a), osp.join(folder, b)
            if osp.isdir(dir_a) and osp.isdir(dir_b):
                names = sorted(f for f in os.listdir(dir_a) if f.lower().endswith(IMAGE_SUFFIXES))
                missing = [n for n in names if not osp.isfile(osp.join(dir_b, n))]
                if missing:
                    raise FileNotFoundError(f'{dir_b} lacks the date-B images of {missing[:5]}')
                if not names:
                    raise FileNotFoundError(f'no images in {dir_a}')
                return [(osp.join(dir_a, n), osp.join(dir_b, n)) for n in names]
        raise FileNotFoundError(f'{folder}: a change-detection folder holds the two dates in '
                                f'sub-folders, one of {[f"{a}/ {b}/" for a, b in _PAIR_DIRS]}')

    # -- call ------------------------------------------------------------------------------
    def __call__(self,
                 inputs,
                 return_datasamples: bool = False,
                 batch_size: int = 1,
                 out_dir: str = '',
                 tile: Union[int, Tuple[int, int], None] = None,
                 overlap: Union[int, Tuple[int, int], None] = None,
                 blend: str = 'gaussian',
                 no_save_vis: bool = False,
                 no_save_pred: bool = False,
                 **kwargs) -> dict:
        """Run the model on ``inputs``.

        Args:
            inputs: A path (image, GeoTIFF, or folder), an array, a dict of
                data-info keys, a ``(img_a, img_b)`` pair (change detection),
                or a list of them.
            return_datasamples (bool): Return the toolbox data samples instead
                of plain dicts. Defaults to False.
            batch_size (int): Images per forward (windows per forward when
                tiled). Defaults to 1.
            out_dir (str): Write ``vis/`` and ``preds/`` here ('' writes nothing).
            tile (int | tuple, optional): Window size (h, w) for scenes: tiled
                inference. None: whole images, except scenes above
                :attr:`auto_tile_pixels`.
            overlap (int | tuple, optional): Window overlap; default 128 (200
                for detection; make it as large as the largest object).
            blend (str): ``'gaussian'`` or ``'mean'`` blending of overlapping
                segmentation / change windows.
            no_save_vis (bool): Do not write visualisations.
            no_save_pred (bool): Do not write prediction files.
            **kwargs: ``show``, ``wait_time``, ``draw_pred``,
                ``pred_score_thr`` (default 0.3: detections below it are
                neither drawn nor written), ``vis_bands`` (bands drawn for
                multispectral inputs), ``opacity``, ``return_vis``,
                ``print_result``.

        Returns:
            dict: ``predictions`` (one per input: a dict, see
            :meth:`pred_to_dict`, or a data sample) and ``visualization``
            (RGB arrays, with ``return_vis=True``).
        """
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        vis_dir = osp.join(out_dir, 'vis') if out_dir and not no_save_vis else ''
        pred_dir = osp.join(out_dir, 'preds') if out_dir and not no_save_pred else ''
        kwargs.setdefault('vis_dir', vis_dir)
        kwargs.setdefault('pred_dir', pred_dir)
        pre_kw, fwd_kw, vis_kw, post_kw = self._dispatch_kwargs(**kwargs)
        score_thr = vis_kw.get('pred_score_thr', 0.3)
        items = self._inputs_to_list(inputs)
        whole, tiled = [], []
        for i, item in enumerate(items):
            size = self._tile_decision(item, tile)
            (tiled if size else whole).append((i, item, size))
        names = {}
        done = []  # (input index, prediction, visualisation)

        def finish(preds, infos):
            # Draw and write batch by batch: no image is kept longer than its batch.
            for info in infos:
                base = info['name']
                names[base] = names.get(base, 0) + 1
                if names[base] > 1:
                    info['name'] = f'{base}_{names[base] - 1}'
            vis = self.visualize(infos, preds, **vis_kw)
            out = self.postprocess(preds, vis, return_datasamples, infos=infos,
                                   score_thr=score_thr, **post_kw)
            vis = out['visualization'] or [None] * len(infos)
            done.extend(zip([info['index'] for info in infos], out['predictions'], vis))

        if whole:
            order = [w[0] for w in whole]
            batches = self.preprocess([w[1] for w in whole], batch_size=batch_size, **pre_kw)
            if self.show_progress:
                from rich.progress import track
                batches = track(batches, description='Inference',
                                total=-(-len(whole) // batch_size))
            for data, batch_infos in batches:
                for info in batch_infos:
                    info['index'] = order[info['index']]
                finish(self.forward(data, **fwd_kw), batch_infos)
        for i, item, size in tiled:
            pred, info = self._infer_tiled(item, i, size, overlap, batch_size, blend,
                                           pred_dir)
            finish([pred], [info])
        done.sort(key=lambda d: d[0])
        return dict(predictions=[d[1] for d in done],
                    visualization=[d[2] for d in done] if vis_kw.get('return_vis') else [])

    def _tile_decision(self, item, tile) -> Optional[Tuple[int, int]]:
        """The window size for ``item``, or None for whole-image inference."""
        if tile is not None:
            return (tile, tile) if isinstance(tile, int) else tuple(tile)
        path = item[0] if isinstance(item, (tuple, list)) and len(item) == 2 else item
        if isinstance(path, dict):
            path = path.get('img_path')
        if isinstance(path, (str, os.PathLike)) and is_raster_path(path) and osp.isfile(path):
            geo = read_georef(os.fspath(path))
            if geo['width'] * geo['height'] > self.auto_tile_pixels:
                print_log(f'{path}: {geo["width"]}x{geo["height"]} px, tiled inference with '
                          f'{self.auto_tile[0]} px windows', logger='current')
                return (self.auto_tile[0], self.auto_tile[0])
        return None

    # -- tiled -----------------------------------------------------------------------------
    def _infer_tiled(self, item, index, tile, overlap, batch_size, blend, pred_dir):
        if isinstance(item, dict):
            item = (item['img_path'], item['img_path2']) if 'img_path2' in item \
                else item['img_path']
        info = dict(index=index, tiled=True, tile=tile, item=item)
        if self.task == 'change_detection':
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(f'change detection takes (img_a, img_b) pairs, got {item!r}')
            path = os.fspath(item[0])
        elif isinstance(item, np.ndarray):
            path = None
        else:
            path = os.fspath(item)
        info.update(path=path, name=osp.splitext(osp.basename(path))[0] if path
                    else f'{index:08d}', geo=read_georef(path) if path else None,
                    channel_order=self._channel_order(
                        raster=bool(path) and is_raster_path(path)
                        and self.raster_loader is not None))
        if self.task == 'segmentation':
            from .seg_tiled_inference import inference_segmentor_tiled
            out_file = self._mask_file(pred_dir, info) if pred_dir else None
            res = inference_segmentor_tiled(
                self.model, item, tile=tile, overlap=128 if overlap is None else overlap,
                batch_size=batch_size, blend=blend, out_file=out_file,
                palette=self.dataset_meta.get('palette'), raster_loader=self.raster_loader,
                progress=self.show_progress)
            info.update(num_windows=res['num_windows'], written=out_file)
            return self._seg_sample(res['mask']), info
        if self.task == 'change_detection':
            from .cd_tiled_inference import inference_change_pair_tiled
            res = inference_change_pair_tiled(
                self.model, os.fspath(item[0]), os.fspath(item[1]), tile=tile,
                overlap=128 if overlap is None else overlap, batch_size=batch_size,
                blend=blend, progress=self.show_progress)
            info.update(num_windows=res['num_windows'], pair=tuple(map(os.fspath, item)))
            return self._seg_sample(res['mask']), info
        if self.task in ('detection', 'rotated_detection'):
            from .det_tiled_inference import inference_detector_tiled
            # rasters are read window by window, with the inferencer's overrides
            merged = inference_detector_tiled(
                self.model, item, tile=tile, overlap=200 if overlap is None else overlap,
                batch_size=batch_size, raster_loader=self.raster_loader)
            merged.set_metainfo(dict(img_path=path))
            info['num_windows'] = len(merged.windows)
            return merged, info
        # classification: one label per window (a land-use grid)
        scene = SceneReader(item, self.raster_loader, self.file_loader)
        windows = sliding_windows(scene.height, scene.width, tile,
                                  0 if overlap is None else overlap)
        samples = []
        for start in range(0, len(windows), batch_size):
            batch = windows[start:start + batch_size]
            data = [self.pipeline(window_results(scene.read(w)[0], w, path, k))
                    for k, w in enumerate(batch)]
            samples.extend(self.forward(self.collate_fn(data)))
        info.update(num_windows=len(windows), windows=windows)
        return samples, info

    def _seg_sample(self, mask: np.ndarray):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        sample = SegDataSample()
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(mask.astype(np.int64))[None])
        sample.set_metainfo(dict(ori_shape=mask.shape, img_shape=mask.shape))
        return sample

    @torch.no_grad()
    def forward(self, inputs, **kwargs):
        return self.model.test_step(inputs)

    # -- visualisation ---------------------------------------------------------------------
    def _display(self, info) -> Optional[np.ndarray]:
        """RGB uint8 image to draw on, or None if the scene is too large."""
        vis_bands = info.get('vis_bands')
        if info.get('tiled'):
            geo = info.get('geo')
            if geo and geo['width'] * geo['height'] > self.max_vis_pixels:
                print_log(f'{info["path"]}: {geo["width"]}x{geo["height"]} px, too large to '
                          'draw; see the prediction file', logger='current')
                return None
            if isinstance(info['item'], np.ndarray):
                img, nodata = info['item'], None
            else:
                loaded, _ = self._load(info['item'], info['index'])
                img, nodata = loaded['img'], loaded.get('nodata_mask')
        else:
            img, nodata = info['display'], info.get('nodata_mask')
        valid = None if nodata is None else ~nodata
        if self.task == 'change_detection':
            c = img.shape[2] // 2
            return np.concatenate(
                [display_rgb(img[..., :c], info['channel_order'], vis_bands, valid),
                 display_rgb(img[..., c:], info['channel_order'], vis_bands, valid)], axis=1)
        return display_rgb(img, info['channel_order'], vis_bands, valid)

    def visualize(self, inputs: list, preds: list, return_vis: bool = False,
                  show: bool = False, wait_time: float = 0, draw_pred: bool = True,
                  pred_score_thr: float = 0.3, vis_bands: Optional[Sequence[int]] = None,
                  opacity: float = 0.6, vis_dir: str = '') -> Optional[List[np.ndarray]]:
        """Draw predictions with the config's visualizer; ``inputs`` are the
        per-input infos of :meth:`__call__`."""
        if not (return_vis or show or vis_dir):
            return None
        if self.visualizer is None:
            raise ValueError('visualisation needs a `visualizer` in the config')
        results = []
        for info, pred in zip(inputs, preds):
            info['vis_bands'] = vis_bands
            rgb = self._display(info)
            if rgb is None:
                results.append(None)
                continue
            drawn = self._draw(rgb, pred, info, draw_pred, pred_score_thr, opacity,
                               show, wait_time)
            if vis_dir:
                import cv2
                ok, buf = cv2.imencode('.jpg', drawn[..., ::-1])
                if not ok:
                    raise RuntimeError(f'could not encode the visualisation of {info["name"]}')
                info['vis_file'] = osp.join(vis_dir, info['name'] + '.jpg')
                atomic_write(buf.tobytes(), info['vis_file'])
            results.append(drawn)
        return results if return_vis else None

    def _draw(self, rgb, pred, info, draw_pred, score_thr, opacity, show, wait_time):
        vis = self.visualizer
        name = info['name']
        if self.task == 'classification':
            classes = self.dataset_meta.get('classes')
            if info.get('tiled'):
                return self._draw_windows(rgb, pred, info['windows'], classes)
            return vis.visualize_cls(rgb, pred, classes=classes, draw_gt=False,
                                     draw_pred=draw_pred, show=show, wait_time=wait_time,
                                     name=name)
        if self.task in ('segmentation', 'change_detection'):
            vis.alpha = opacity
            if self.task == 'change_detection':
                # date A | date B with the change overlaid
                w = rgb.shape[1] // 2
                vis.add_datasample(name, np.ascontiguousarray(rgb[:, w:]), pred,
                                   draw_gt=False, draw_pred=draw_pred, show=show,
                                   wait_time=wait_time, with_labels=False)
                return np.concatenate([rgb[:, :w], vis.get_image()], axis=1)
            vis.add_datasample(name, rgb, pred, draw_gt=False, draw_pred=draw_pred,
                               show=show, wait_time=wait_time, with_labels=False)
            return vis.get_image()
        vis.add_datasample(name, rgb, pred, draw_gt=False, draw_pred=draw_pred, show=show,
                           wait_time=wait_time, pred_score_thr=score_thr)
        return vis.get_image()

    def _draw_windows(self, rgb, samples, windows, classes):
        vis = self.visualizer
        vis.set_image(rgb)
        palette = self.dataset_meta.get('palette') or [[255, 0, 0]]
        for (x0, y0, x1, y1), sample in zip(windows, samples):
            label = int(sample.pred_label.item())
            color = tuple(int(c) for c in palette[label % len(palette)])
            vis.draw_bboxes(torch.tensor([[x0 + 2, y0 + 2, x1 - 2, y1 - 2]]),
                            edge_colors=[color], line_widths=2)
            text = classes[label] if classes else str(label)
            vis.draw_texts(f'{text} {float(sample.pred_score.max()):.2f}',
                           torch.tensor([x0 + 6, y0 + 6]), colors=[color], font_sizes=12)
        return vis.get_image()

    # -- outputs ---------------------------------------------------------------------------
    def postprocess(self, preds: list, visualization, return_datasamples: bool = False,
                    print_result: bool = False, pred_dir: str = '', infos=None,
                    score_thr: float = 0.3) -> dict:
        """Write prediction files and pack the results (one entry per input)."""
        outputs = []
        for pred, info in zip(preds, infos):
            record = self.pred_to_dict(pred, info, score_thr)
            if pred_dir:
                record['files'] = self._write_pred(record, info, pred_dir)
            if info.get('vis_file'):
                record.setdefault('files', {})['vis'] = info['vis_file']
            if print_result:
                print_log({k: v for k, v in record.items() if k != 'sem_seg'}, logger='current')
            outputs.append(pred if return_datasamples else record)
        return dict(predictions=outputs, visualization=visualization or [])

    def pred_to_dict(self, pred, info, score_thr: float = 0.3) -> dict:
        """A JSON-friendly record of one prediction (masks as arrays)."""
        classes = self.dataset_meta.get('classes')
        record = dict(task=self.task, name=info['name'], input=info.get('path'))
        if info.get('pair'):
            record['input'] = list(info['pair'])
        if info.get('tiled'):
            record.update(tile=list(info['tile']), num_windows=info.get('num_windows'))
        if self.task == 'classification':
            samples = pred if isinstance(pred, list) else [pred]
            entries = []
            for s in samples:
                label = int(s.pred_label.item())
                entries.append(dict(pred_label=label,
                                    pred_score=float(s.pred_score[label]),
                                    pred_class=classes[label] if classes else None,
                                    pred_scores=[round(float(v), 6) for v in s.pred_score]))
            if info.get('tiled'):
                for e, w in zip(entries, info['windows']):
                    e['window'] = list(w)
                record['windows'] = entries
            else:
                record.update(entries[0])
            return record
        if self.task in ('segmentation', 'change_detection'):
            mask = pred.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
            record['sem_seg'] = mask
            record['class_pixels'] = {
                (classes[int(k)] if classes and int(k) < len(classes) else
                 ('nodata' if int(k) == NODATA_CLASS else str(int(k)))): int(n)
                for k, n in zip(*np.unique(mask, return_counts=True))}
            return record
        inst = pred.pred_instances
        boxes = inst.bboxes
        boxes = getattr(boxes, 'tensor', boxes).float().cpu().numpy()
        keep = inst.scores.cpu().numpy() >= score_thr
        labels = inst.labels.cpu().numpy()[keep]
        record.update(
            box_type='rbox' if boxes.shape[-1] == 5 else 'hbox',
            bboxes=[[round(float(v), 2) for v in b] for b in boxes[keep]],
            scores=[round(float(v), 5) for v in inst.scores.cpu().numpy()[keep]],
            labels=[int(v) for v in labels],
            classes=[classes[int(v)] if classes and int(v) < len(classes) else str(int(v))
                     for v in labels],
            score_thr=score_thr)
        return record

    def _mask_file(self, pred_dir: str, info) -> str:
        ext = '.tif' if info.get('path') and is_raster_path(info['path']) else '.png'
        return osp.join(pred_dir, info['name'] + ext)

    def _write_pred(self, record, info, pred_dir) -> Dict[str, str]:
        """Write the prediction files of one input; returns ``{kind: path}``."""
        files = {}
        geo = info.get('geo')
        georef = is_georeferenced(geo)
        if self.task in ('segmentation', 'change_detection'):
            out = self._mask_file(pred_dir, info)
            if info.get('written') != out:  # tiled segmentation wrote it already
                mask = record['sem_seg']
                nodata = info.get('nodata_mask')
                if nodata is not None and nodata.shape == mask.shape and nodata.any():
                    mask = mask.copy()
                    mask[nodata] = NODATA_CLASS
                    record['sem_seg'] = mask
                if out.endswith('.tif'):
                    write_geotiff(out, mask, geo, nodata=NODATA_CLASS,
                                  colormap=colormap_from_palette(self.dataset_meta.get('palette')))
                else:
                    import mmcv
                    if not mmcv.imwrite(mask, out):
                        raise RuntimeError(f'could not write {out}')
            files['mask'] = out
            return files
        json_record = {k: v for k, v in record.items() if k != 'sem_seg'}
        files['json'] = osp.join(pred_dir, info['name'] + '.json')
        if georef:
            json_record['crs'] = geo.get('crs')
            json_record['transform'] = list(geo['transform'])
        write_json(files['json'], json_record)
        if georef and self.task in ('detection', 'rotated_detection'):
            files['geojson'] = osp.join(pred_dir, info['name'] + '.geojson')
            boxes = np.asarray(record['bboxes'], dtype=np.float64).reshape(
                -1, 5 if record['box_type'] == 'rbox' else 4)
            write_json(files['geojson'], detections_to_geojson(
                boxes, record['scores'], record['labels'], self.dataset_meta.get('classes'),
                geo, properties=dict(source=info.get('path'))))
        elif georef and self.task == 'classification' and info.get('tiled'):
            files['geojson'] = osp.join(pred_dir, info['name'] + '.geojson')
            windows = np.asarray([e['window'] for e in record['windows']], dtype=np.float64)
            write_json(files['geojson'], detections_to_geojson(
                windows, [e['pred_score'] for e in record['windows']],
                [e['pred_label'] for e in record['windows']],
                self.dataset_meta.get('classes'), geo,
                properties=dict(source=info.get('path'))))
        return files

"""What every task's inferencer shares: model, inputs, whole images and tiled scenes.

:class:`BaseRSVHeatInferencer` follows mmengine's ``BaseInferencer``
(preprocess -> forward -> visualize -> postprocess) and adds large scenes:
an input is either run whole (batched with other inputs) or, with ``tile``
or above :attr:`~BaseRSVHeatInferencer.auto_tile_pixels`, cut into windows
by the tiled-scene engine (:mod:`rsvheat_mm.apis.tiling`). Both paths read
inputs through the same :class:`~rsvheat_mm.apis.tiling.WindowPipeline`, so
a GeoTIFF and a PNG of the same pixels give the same prediction, and NaN/Inf
pixels of float data are nodata on both paths.

The task classes (``classification.py``, ``segmentation.py``,
``change_detection.py``, ``detection.py``) fill in what differs: how a
tiled scene is predicted, drawn, recorded and written.
"""
import copy
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.infer import BaseInferencer
from mmengine.logging import print_log
from mmengine.registry import init_default_scope

from rsvheat_mm.datasets.transforms.geotiff import RASTER_SUFFIXES, LoadGeoRasterFromFile
from rsvheat_mm.utils.fileio import atomic_write
from ..geo_io import display_rgb, is_raster_path, read_georef
from ..tiling import SceneReader, WindowPipeline, WindowPlan, register_toolbox
from ..tiling.reader import scene_paths
from .resolve import list_models, resolve_config, task_of_config

__all__ = ['BaseRSVHeatInferencer', 'IMAGE_SUFFIXES']

#: Files of a folder input: what OpenCV decodes, and the rasters read with rasterio.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.ppm', '.pgm') + RASTER_SUFFIXES


class BaseRSVHeatInferencer(BaseInferencer):
    """Common part of the task inferencers (see :class:`~rsvheat_mm.apis.RSVHeatInferencer`
    for the arguments and the call)."""

    #: Tasks (see :data:`~.resolve.TASKS`) of the configs this class runs.
    tasks: Tuple[str, ...] = ()
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
    #: Window size of automatic tiling.
    auto_tile: Tuple[int, int] = (1024, 1024)
    #: Window overlap when ``overlap`` is not given.
    default_overlap: int = 128
    #: Tiled scenes are drawn on a preview at most this many pixels a side
    #: (nearest neighbour), so drawing does not need the whole scene in memory.
    preview_side: int = 2048

    def __init__(self,
                 model: Union[str, dict, None] = None,
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 cfg_options: Optional[dict] = None,
                 palette: Optional[Sequence] = None,
                 raster_loader: Optional[dict] = None,
                 show_progress: bool = True) -> None:
        import rsvheat_mm  # noqa: F401  (registration, safe checkpoint loading)
        cfg, weights, self._checkpoint = resolve_config(model, weights)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        self.task = task_of_config(cfg)
        if self.task not in self.tasks:
            raise ValueError(f'{type(self).__name__} runs {" / ".join(self.tasks)} models; '
                             f'this config is a {self.task} model (RSVHeatInferencer picks '
                             'the right inferencer)')
        scope = cfg.get('default_scope')
        register_toolbox(scope)
        init_default_scope(scope)
        self._checkpoint_meta = {}
        self._user_palette = palette
        self._raster_overrides = dict(raster_loader or {})
        super().__init__(model=cfg, weights=weights, device=device, scope=scope,
                         show_progress=show_progress)
        if next(self.model.parameters()).device.type == 'cpu':
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

    list_models = staticmethod(list_models)

    # -- model, classes, pipeline -----------------------------------------------------------
    def _prepare_model_cfg(self, cfg) -> None:
        """Task-specific test-time changes of ``cfg.model``."""

    def _init_model(self, cfg, weights, device='cpu'):
        # mmpretrain configs keep the data preprocessor at the top level (the
        # Runner moves it into the model); do the same.
        if cfg.get('data_preprocessor') is not None and cfg.model.get('data_preprocessor') is None:
            cfg.model.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
        self._prepare_model_cfg(cfg)
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

    def _init_pipeline(self, cfg):
        #: The config's test pipeline split into loaders and per-window transforms,
        #: for whole images and tiled scenes alike.
        self.window_pipeline = WindowPipeline(cfg, self._raster_overrides)
        return self.window_pipeline.transforms

    @property
    def raster_loader(self) -> Optional[LoadGeoRasterFromFile]:
        """How rasters are read (None: by the config's own loader)."""
        return self.window_pipeline.raster_loader

    # -- inputs ---------------------------------------------------------------------------
    def _inputs_to_list(self, inputs) -> list:
        if isinstance(inputs, (str, os.PathLike)) and osp.isdir(inputs):
            return self._scenes_in(os.fspath(inputs))
        if isinstance(inputs, (list, tuple)):
            return list(inputs)
        return [inputs]

    def _scenes_in(self, folder: str) -> list:
        """The inputs of a folder: its images."""
        files = sorted(f for f in os.listdir(folder)
                       if f.lower().endswith(IMAGE_SUFFIXES) and osp.isfile(osp.join(folder, f)))
        if not files:
            raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
        return [osp.join(folder, f) for f in files]

    def _reader(self, item, index: int) -> SceneReader:
        """A reader of one input (a path, an array, a dict of data-info keys)."""
        if not isinstance(item, (str, os.PathLike, np.ndarray, dict)):
            raise TypeError(f'unsupported input {type(item).__name__}: give a path, an array '
                            'or a dict of data-info keys')
        return self.window_pipeline.reader(item)

    def _channel_order(self, reader: SceneReader) -> str:
        """Channel order of loaded images (for drawing): OpenCV-style loaders
        give BGR (3 bands); raster loaders with ``color_type='unchanged'``
        the file's order."""
        loader = self.window_pipeline.raster_loader if reader.is_raster \
            else self.window_pipeline.file_loader
        if isinstance(loader, LoadGeoRasterFromFile) and loader.color_type == 'unchanged':
            return 'rgb'
        return 'bgr'

    def _info(self, reader: SceneReader, index: int) -> dict:
        path = reader.paths[0] if reader.paths else None
        info = dict(index=index, path=path, geo=reader.geo, reader=reader,
                    name=osp.splitext(osp.basename(path))[0] if path else f'{index:08d}',
                    channel_order=self._channel_order(reader))
        if len(reader.paths) > 1:
            info['pair'] = tuple(reader.paths)
        return info

    def _report_nonfinite(self, info: dict) -> None:
        count = info.get('nonfinite_pixels')
        if count:
            print_log(f'{info["path"] or info["name"]}: {count} NaN/Inf pixels treated as '
                      'nodata (filled before the model, nodata in the outputs)',
                      logger='current', level=30)

    def preprocess(self, inputs: list, batch_size: int = 1, **kwargs):
        """Yield ``(collated batch, infos)`` for batches of whole inputs."""
        chunk = []
        for index, item in inputs:
            reader = self._reader(item, index)
            data = reader.read()
            info = self._info(reader, index)
            info.update(display=data.img, nodata_mask=data.nodata,
                        nonfinite_pixels=0 if data.nonfinite is None
                        else int(data.nonfinite.sum()))
            results = self.window_pipeline.results(data, reader, None, index)
            chunk.append((self.pipeline(results), info))
            if len(chunk) == batch_size:
                yield self.collate_fn([c[0] for c in chunk]), [c[1] for c in chunk]
                chunk = []
        if chunk:
            yield self.collate_fn([c[0] for c in chunk]), [c[1] for c in chunk]

    @torch.no_grad()
    def forward(self, inputs, **kwargs):
        return self.model.test_step(inputs)

    # -- call -------------------------------------------------------------------------------
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
        """Run the model on ``inputs``; see :class:`~rsvheat_mm.apis.RSVHeatInferencer`."""
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
            if size:
                tiled.append((i, item, size))
            else:
                whole.append((i, item))
        names = {}
        done = []  # (input index, prediction, visualisation)

        def finish(preds, infos):
            # Draw and write batch by batch: no image is kept longer than its batch.
            for info in infos:
                base = info['name']
                names[base] = names.get(base, 0) + 1
                if names[base] > 1:
                    info['name'] = f'{base}_{names[base] - 1}'
                self._report_nonfinite(info)
            vis = self.visualize(infos, preds, **vis_kw)
            out = self.postprocess(preds, vis, return_datasamples, infos=infos,
                                   score_thr=score_thr, **post_kw)
            vis = out['visualization'] or [None] * len(infos)
            done.extend(zip([info['index'] for info in infos], out['predictions'], vis))

        if whole:
            batches = self.preprocess(whole, batch_size=batch_size, **pre_kw)
            if self.show_progress:
                from rich.progress import track
                batches = track(batches, description='Inference',
                                total=-(-len(whole) // batch_size))
            for data, batch_infos in batches:
                preds = self.forward(data, **fwd_kw)
                preds = [self._mask_nodata(p, info.get('nodata_mask'))
                         for p, info in zip(preds, batch_infos)]
                finish(preds, batch_infos)
        for i, item, size in tiled:
            reader = self._reader(item, i)
            info = self._info(reader, i)
            plan = WindowPlan(reader.height, reader.width, size,
                              self.default_overlap if overlap is None else overlap)
            info.update(tiled=True, tile=tuple(plan.tile), num_windows=len(plan))
            # a class map is kept in memory only if it is not written to a file
            # (or data samples are asked for): the file is the output of a scene
            keep = return_datasamples or not pred_dir
            pred = self._predict_tiled(reader, plan, info, batch_size=batch_size, blend=blend,
                                       pred_dir=pred_dir, keep=keep)
            finish([pred], [info])
        done.sort(key=lambda d: d[0])
        return dict(predictions=[d[1] for d in done],
                    visualization=[d[2] for d in done] if vis_kw.get('return_vis') else [])

    def _tile_decision(self, item, tile) -> Optional[Tuple[int, int]]:
        """The window size for ``item``, or None for whole-image inference."""
        if tile is not None:
            return (tile, tile) if isinstance(tile, int) else tuple(tile)
        paths = scene_paths(item) if not isinstance(item, np.ndarray) else []
        if paths and is_raster_path(paths[0]) and osp.isfile(paths[0]):
            geo = read_georef(paths[0])
            if geo['width'] * geo['height'] > self.auto_tile_pixels:
                print_log(f'{paths[0]}: {geo["width"]}x{geo["height"]} px, tiled inference '
                          f'with {self.auto_tile[0]}x{self.auto_tile[1]} px windows',
                          logger='current')
                return tuple(self.auto_tile)
        return None

    # -- task hooks -------------------------------------------------------------------------
    def _mask_nodata(self, pred, nodata: Optional[np.ndarray]):
        """A whole-image prediction with its ``nodata`` pixels taken out."""
        return pred

    def _predict_tiled(self, reader: SceneReader, plan: WindowPlan, info: dict, batch_size: int,
                       blend: str, pred_dir: str, keep: bool):
        """Predict a scene window by window (filling ``info``); returns the prediction."""
        raise NotImplementedError

    def _draw(self, rgb: np.ndarray, pred, info: dict, draw_pred: bool, score_thr: float,
              opacity: float, show: bool, wait_time: float) -> np.ndarray:
        """Draw ``pred`` on ``rgb`` (a preview of the scene when ``info['vis_scale'] < 1``)."""
        raise NotImplementedError

    def pred_to_dict(self, pred, info: dict, score_thr: float = 0.3) -> dict:
        """A JSON-friendly record of one prediction."""
        record = dict(task=self.task, name=info['name'], input=info.get('path'))
        if info.get('pair'):
            record['input'] = list(info['pair'])
        if info.get('tiled'):
            record.update(tile=list(info['tile']), num_windows=info.get('num_windows'))
        if info.get('nonfinite_pixels'):
            record['nonfinite_pixels'] = info['nonfinite_pixels']
        return record

    def _write_pred(self, record: dict, info: dict, pred_dir: str) -> Dict[str, str]:
        """Write the prediction files of one input; returns ``{kind: path}``."""
        raise NotImplementedError

    # -- visualisation ----------------------------------------------------------------------
    def _display(self, info: dict) -> np.ndarray:
        """RGB uint8 image to draw on: the input, or a preview of a tiled scene."""
        if info.get('tiled'):
            data, info['vis_scale'] = info['reader'].preview(self.preview_side)
            img, nodata = data.img, data.nodata
        else:
            img, nodata = info['display'], info.get('nodata_mask')
            info['vis_scale'] = 1.
        valid = None if nodata is None else ~nodata
        return self._to_rgb(img, info, valid)

    def _to_rgb(self, img: np.ndarray, info: dict, valid: Optional[np.ndarray]) -> np.ndarray:
        return display_rgb(img, info['channel_order'], info.get('vis_bands'), valid)

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

    # -- outputs ----------------------------------------------------------------------------
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

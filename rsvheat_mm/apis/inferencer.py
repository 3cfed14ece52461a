"""One inference API for every rsvheat_mm task: images, folders, huge (Geo)TIFF scenes.

:class:`RSVHeatInferencer` is built like the toolboxes' inferencers
(``mmpretrain.ImageClassificationInferencer``, ``mmseg.MMSegInferencer``,
``mmdet.DetInferencer``): from a config (file, ``Config``, a model name of
``model-index.yml``, or nothing but a checkpoint that stores its config),
and called on inputs::

    from rsvheat_mm.apis import RSVHeatInferencer
    inferencer = RSVHeatInferencer(
        'configs/demo/upernet_rsvheat-demo_1xb2-40iter_loveda-samples-256x256.py',
        weights='work_dirs/demo/seg/iter_40.pth')
    result = inferencer('scene.tif', out_dir='outputs/')              # one image
    result = inferencer('folder/', out_dir='outputs/', batch_size=4)  # a folder
    result = inferencer('huge_scene.tif', out_dir='outputs/', tile=1024, overlap=128)

It returns the inferencer of the config's task (``default_scope`` mmpretrain
-> :class:`~.inferencers.ClassificationInferencer`, mmseg ->
:class:`~.inferencers.SegmentationInferencer` or, for bi-temporal models,
:class:`~.inferencers.ChangeDetectionInferencer`, mmdet / mmrotate ->
:class:`~.inferencers.DetectionInferencer`), all built on
:class:`~.inferencers.BaseRSVHeatInferencer` and the tiled-scene engine
(:mod:`rsvheat_mm.apis.tiling`).
"""
from abc import ABCMeta
from typing import Optional, Sequence

from rsvheat_mm.registry import INFERENCERS
from .inferencers import INFERENCER_OF_TASK, BaseRSVHeatInferencer
from .inferencers.resolve import TASKS, list_models, resolve_config, task_of_config

__all__ = ['RSVHeatInferencer', 'task_of_config', 'TASKS']


@INFERENCERS.register_module()
class RSVHeatInferencer(metaclass=ABCMeta):
    """Inference with any rsvheat_mm model (classification, segmentation,
    change detection, horizontal and rotated detection).

    Building it returns the inferencer of the config's task; every one of
    them is an instance of this class (``isinstance`` holds) and is called
    the same way.

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

    **Calling it** -- ``inferencer(inputs, return_datasamples=False,
    batch_size=1, out_dir='', tile=None, overlap=None, blend='gaussian',
    no_save_vis=False, no_save_pred=False, **kwargs)``:

    * ``inputs``: a path (image, GeoTIFF, or folder), an array, a dict of
      data-info keys, an ``(img_a, img_b)`` pair (change detection; a folder
      holds ``A/`` and ``B/``), or a list of them.
    * ``batch_size``: images per forward (windows per forward when tiled).
    * ``out_dir``: write ``vis/<name>.jpg`` (drawn by the config's
      visualizer) and ``preds/<name>.{json,geojson,tif,png}``, atomically.
    * ``tile`` / ``overlap``: window size and overlap (h, w) for scenes;
      without ``tile``, scenes above
      :attr:`~.inferencers.BaseRSVHeatInferencer.auto_tile_pixels` (4096 x
      4096) are tiled with 1024 px windows. Default overlap 128 (200 for detection, make
      it as large as the largest object; 0 for classification grids).
    * ``blend``: ``'gaussian'`` or ``'mean'`` weighting of overlapping
      segmentation / change windows.
    * ``kwargs``: ``show``, ``wait_time``, ``draw_pred``, ``pred_score_thr``
      (default 0.3: detections below it are neither drawn nor written),
      ``vis_bands`` (bands drawn for multispectral inputs), ``opacity``,
      ``return_vis``, ``print_result``.

    It returns ``dict(predictions=[...], visualization=[...])``: one record
    per input (see ``pred_to_dict`` of the task's inferencer; a data sample
    with ``return_datasamples=True``) and the drawings (``return_vis``).

    **Rasters and nodata.** GeoTIFFs and other GDAL rasters are read with
    rasterio through the raster equivalent of the config's loader (any band
    count and dtype). Nodata pixels -- the file's nodata value or mask, and
    NaN/Inf pixels of float rasters even without a nodata tag -- are filled
    before the model and written as ``255`` in class and change masks
    (GeoTIFFs keep the source CRS and transform and carry the nodata tag);
    detections centred on them are dropped. Records count NaN/Inf pixels in
    ``nonfinite_pixels`` and a warning names the file.

    **Large scenes** are cut into overlapping windows (the tiled-scene
    engine, :mod:`rsvheat_mm.apis.tiling`): segmentation and change
    probabilities are blended and the mask is streamed to its GeoTIFF strip
    by strip, so memory does not grow with the scene; detections are merged
    with NMS; classification labels every window. A tiled scene's mask is
    returned in the record (``sem_seg``) only when no prediction file is
    written (or with ``return_datasamples``); otherwise the file is the
    output and ``sem_seg`` is None. Scenes are drawn on a preview of at
    most :attr:`~.inferencers.BaseRSVHeatInferencer.preview_side` pixels a
    side.
    """

    def __new__(cls, model=None, weights: Optional[str] = None, device: Optional[str] = None,
                cfg_options: Optional[dict] = None, palette: Optional[Sequence] = None,
                raster_loader: Optional[dict] = None, show_progress: bool = True):
        cfg, weights, _ = resolve_config(model, weights)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        task_cls = INFERENCER_OF_TASK[task_of_config(cfg)]
        return task_cls(cfg, weights, device=device, palette=palette,
                        raster_loader=raster_loader, show_progress=show_progress)

    list_models = staticmethod(list_models)


# Every task inferencer counts as an RSVHeatInferencer (``isinstance``).
RSVHeatInferencer.register(BaseRSVHeatInferencer)

"""The tiled-scene engine shared by every task's inference.

A scene of any size (a GeoTIFF tens of thousands of pixels a side, or a
co-registered pair of them) goes through five parts, one file each:

========================  ===========================================================
``reader.py``             :class:`SceneReader`: windows of 1..N co-registered images
                          (rasters read window by window; nodata and NaN masked)
``plan.py``               :class:`WindowPlan`: overlapping windows in rows, and which
                          part of the scene each one finishes
``pipeline.py``           :class:`WindowPipeline`: the config's test pipeline split
                          into loaders and per-window transforms; batches to the model
``blend.py`` / ``merge.py``  :class:`DenseBlender` (probabilities, streamed) and
                          :class:`DetectionMerger` (shift, nodata, NMS)
``writer.py``             :class:`MaskWriter`: class maps streamed strip by strip to a
                          GeoTIFF, written atomically
========================  ===========================================================

``engine.py`` holds the loops that connect them (:func:`run_dense`,
:func:`run_detection`, :func:`run_windows`). Dense outputs need memory for a
window and a strip of the scene's width, never for the whole scene.
"""
from .blend import BlendedPatch, DenseBlender, blend_weights  # noqa: F401
from .engine import (dense_probabilities, labels_from_probs, run_dense,  # noqa: F401
                     run_detection, run_windows)
from .merge import (DetectionMerger, default_merge_iou, merge_window_detections,  # noqa: F401
                    shift_boxes)
from .pipeline import (WindowPipeline, WindowPrediction, get_test_pipeline_cfg,  # noqa: F401
                       register_toolbox, split_test_pipeline)
from .plan import WindowPlan, WindowRow  # noqa: F401
from .reader import SceneReader, WindowData  # noqa: F401
from .writer import MaskWriter  # noqa: F401

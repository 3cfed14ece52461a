"""One inferencer per task behind :class:`~rsvheat_mm.apis.RSVHeatInferencer`.

Only ``RSVHeatInferencer`` is registered (``INFERENCERS``); it builds the
task's class below, which can also be imported and built directly.

``base.py`` holds what every task shares (config and weights, inputs, whole
images and tiled scenes, drawing and writing); each task file holds what
differs. ``resolve.py`` finds the config, weights and task of a model name.
"""
from .base import BaseRSVHeatInferencer  # noqa: F401
from .change_detection import ChangeDetectionInferencer  # noqa: F401
from .classification import ClassificationInferencer  # noqa: F401
from .detection import DetectionInferencer, inference_detector_tiled  # noqa: F401
from .resolve import TASKS, list_models, resolve_config, task_of_config  # noqa: F401
from .segmentation import SegmentationInferencer, inference_segmentor_tiled  # noqa: F401

#: The inferencer class of each task.
INFERENCER_OF_TASK = {
    'classification': ClassificationInferencer,
    'segmentation': SegmentationInferencer,
    'change_detection': ChangeDetectionInferencer,
    'detection': DetectionInferencer,
    'rotated_detection': DetectionInferencer,
}

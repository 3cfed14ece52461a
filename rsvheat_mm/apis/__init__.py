# Inference: one inferencer per task (inferencers/) on one tiled-scene engine
# (tiling/), georeferenced I/O (geo_io.py) and ONNX export (onnx_export.py).
from .geo_io import detections_to_geojson, read_georef, write_geotiff  # noqa: F401
from .inferencer import TASKS, RSVHeatInferencer, task_of_config  # noqa: F401
from .inferencers import inference_detector_tiled, inference_segmentor_tiled  # noqa: F401
from .onnx_export import export_backbone, export_segmentor  # noqa: F401

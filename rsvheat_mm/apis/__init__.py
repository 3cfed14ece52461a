# Toolbox-free modules of this package are imported here (one line each).
from .det_tiled_inference import inference_detector_tiled  # noqa: F401
from .geo_io import detections_to_geojson, read_georef, write_geotiff  # noqa: F401
from .seg_tiled_inference import inference_segmentor_tiled  # noqa: F401
from .inferencer import RSVHeatInferencer, task_of_config  # noqa: F401
from .onnx_export import export_backbone, export_segmentor  # noqa: F401

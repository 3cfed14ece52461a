# Toolbox-free modules of this package are imported here (one line each).
from .modality_fusion import RSVHeatModalityFusionNeck  # noqa: F401

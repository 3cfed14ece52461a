# Toolbox-free modules of this package are imported here (one line each).
from .modality_fusion import RSVHeatModalityFusionNeck  # noqa: F401
from .cd_fusion_neck import CDFusionNeck  # noqa: F401
from .frequency_fusion import RSVHeatFrequencyFusion  # noqa: F401
from .reconstruction_decoder import RSVHeatReconstructionDecoder  # noqa: F401

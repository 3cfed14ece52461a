# Toolbox-free modules of this package are imported here (one line each).
from .optical_sar import LoadOpticalSARPair, read_bands  # noqa: F401
from .frequency_masking import *  # noqa: F401,F403
from .geotiff import *  # noqa: F401,F403

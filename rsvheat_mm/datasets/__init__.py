# Toolbox-free modules of this package are imported here (one line each).
from .transforms import *  # noqa: F401,F403
from .pretrain_datasets import *  # noqa: F401,F403
from .rs_det_formats import *  # noqa: F401,F403
from .dota_split import *  # noqa: F401,F403

# Toolbox-free modules of this package are imported here (one line each).
from .transforms import *  # noqa: F401,F403
from .pretrain_datasets import *  # noqa: F401,F403

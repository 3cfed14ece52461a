# Toolbox-free modules of this package are imported here (one line each).
from .pretrain_losses import *  # noqa: F401,F403

# Toolbox-free models only; toolbox-specific ones (segmentors, selfsup, ...)
# are registered by utils/plugins.py when their toolbox is imported.
from .backbones import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403

# Data preprocessors of the mmseg-based tasks (multi-band segmentation,
# bitemporal change detection); registered by utils/plugins.py when mmseg is
# imported, so nothing is imported here. The pretraining preprocessor lives
# with its algorithm in models/selfsup/.

# Toolbox-free modules of this package are imported here (one line each).

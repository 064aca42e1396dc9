"""The network and its model files (format, upgrade, registry), devices, inference options, sliding window,
post-processing and the one segmentation path. May import common, io and preprocessing."""

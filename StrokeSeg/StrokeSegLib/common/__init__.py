"""Shared by every stage: typed errors, progress and cancel, atomic writes, grids and resampling, lesion labelling and
voxel volume. Imports nothing else from StrokeSegLib."""

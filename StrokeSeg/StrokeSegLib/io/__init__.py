"""Reading and writing images and masks (file integrity, NIfTI header reuse) and finding cases on disk. May import
common."""

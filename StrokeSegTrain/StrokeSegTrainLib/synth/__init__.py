"""Synthetic acute-stroke DWI/ADC cases (see generator.py)."""

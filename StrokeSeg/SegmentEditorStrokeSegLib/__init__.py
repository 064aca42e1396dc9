"""The Segment Editor effect of StrokeSeg (loaded by Slicer from SegmentEditorEffect.py)."""
from SegmentEditorEffects.AbstractScriptedSegmentEditorEffect import AbstractScriptedSegmentEditorEffect  # noqa: F401

from .SegmentEditorEffect import *  # noqa: F403

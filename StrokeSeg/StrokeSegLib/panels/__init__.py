"""Qt-free state of the Slicer panels and the Segment Editor effect: child jobs, the panel's run, the effect's
decisions. May import the stages and scene, never cli."""

"""Whole jobs built on the engine: batch (pipeline, table, claims), the demo and the test phantom. May import the stages
below."""

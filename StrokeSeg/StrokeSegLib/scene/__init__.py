"""The Slicer side: MRML adapter, RAS/LPS conversion, module logic and dependency install. The only package that imports
slicer (lazily, inside functions). May import the stages (common to apps), never cli or panels."""

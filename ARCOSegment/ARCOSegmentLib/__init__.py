"""Helpers of the ARCOSegment Slicer module. None imports `slicer` at module level.

MODULES lists them in dependency order (the module's Reload reloads them in this order).
"""

MODULES = ("events", "process", "worker", "models", "segments", "conversions", "annotations",
           "engine", "device", "scene", "mrml", "dependencies", "batch", "logic", "panel_models",
           "panel", "selftest")

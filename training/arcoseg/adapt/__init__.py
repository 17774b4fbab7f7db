"""Adapt: fine-tune a model from a few annotated slices plus unlabelled images."""

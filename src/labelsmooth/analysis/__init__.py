"""Analyses of a trained network's outputs, as plain functions of arrays (usable in a notebook)."""

from labelsmooth.analysis.projection import project_onto_template_plane, projection_figure, template_plane

__all__ = ["project_onto_template_plane", "projection_figure", "template_plane"]

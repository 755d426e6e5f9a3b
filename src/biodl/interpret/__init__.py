"""Interpretability: attribution maps (captum), network internals, and checks of the maps
(sanity check by model randomisation, deletion/insertion faithfulness)."""

from .attributions import BASELINES, METHODS, PixelModel, attribute, parse_methods
from .checks import deletion_insertion, sanity_check

__all__ = ["BASELINES", "METHODS", "PixelModel", "attribute", "deletion_insertion", "parse_methods", "sanity_check"]

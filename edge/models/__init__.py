"""Model zoo: X3D, Ghost-module nets, 2D-only ConvNets.  Importing this package
imports no torch; ``create_model`` imports the family module it needs."""
from edge.models.registry import MODELS, ModelInfo, create_model, model_info, variant, variant_from_tag

__all__ = ["MODELS", "ModelInfo", "create_model", "model_info", "variant", "variant_from_tag"]

"""What the network looks at: occlusion and sliding-window maps, saliency, guided backprop,
deconvnet and Grad-CAM, batched on the device, drawn at the source image's own resolution.

    >>> import jaxnsfw
    >>> from jaxnsfw import explain
    >>> clf = jaxnsfw.Classifier()
    >>> drop = explain.occlusion_map("photo.jpg", clf, box=64, stride=16)         # (H, W)
    >>> cam = explain.gradcam_map("photo.jpg", explain.classifier_network(clf))  # (H, W)

Perturbation maps take any ImageScorer (prepare + batched score); gradient maps take any Network
(a Flax module with OpenNSFW's `relu` / `perturbed_layers` hooks and its variables). Rendering
(render.py) needs matplotlib: pip install "jaxnsfw[explain]".
"""

from jaxnsfw.explain.backprop import (NSFW_LOGIT, RELU_RULES, SFW_LOGIT, Network, Target, classifier_network,
                                      deconvnet_map, deconvnet_relu, gradient_explanation, guided_backprop_map,
                                      guided_relu, input_gradients, pixel_map, saliency_map)
from jaxnsfw.explain.geometry import REFERENCE_GEOMETRY, InputGeometry, box_grid, input_map_to_source
from jaxnsfw.explain.gradcam import DEFAULT_LAYER, gradcam, gradcam_map, layer_activations_and_gradients
from jaxnsfw.explain.occlusion import FILLS, occluded_scores, occlusion_map
from jaxnsfw.explain.scoring import ImageScorer, classifier_scorer, reference_input, source_rgb
from jaxnsfw.explain.windows import window_map, window_scores

__all__ = [
    "DEFAULT_LAYER", "FILLS", "NSFW_LOGIT", "REFERENCE_GEOMETRY", "RELU_RULES", "SFW_LOGIT", "ImageScorer",
    "InputGeometry", "Network", "Target", "box_grid", "classifier_network", "classifier_scorer", "deconvnet_map",
    "deconvnet_relu", "gradcam", "gradcam_map", "gradient_explanation", "guided_backprop_map", "guided_relu",
    "input_gradients", "input_map_to_source", "layer_activations_and_gradients", "occluded_scores",
    "occlusion_map", "pixel_map", "reference_input", "saliency_map", "source_rgb", "window_map", "window_scores",
]

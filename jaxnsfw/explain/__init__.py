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

The names below load their module on first use, so that `jaxnsfw.explain.command` (imported to
build the `jaxnsfw` parser) does not pull in JAX.
"""

from __future__ import annotations

from jaxnsfw.lazy import lazy_exports

_MODULE_OF = {
    **dict.fromkeys(("NSFW_LOGIT", "RELU_RULES", "SFW_LOGIT", "Network", "Target", "classifier_network",
                     "deconvnet_map", "deconvnet_relu", "gradient_explanation", "guided_backprop_map",
                     "guided_relu", "input_gradients", "pixel_map", "saliency_map", "signal_to_source"), "backprop"),
    **dict.fromkeys(("REFERENCE_GEOMETRY", "InputGeometry", "box_grid", "input_map_to_source"), "geometry"),
    **dict.fromkeys(("DEFAULT_LAYER", "gradcam", "gradcam_map", "layer_activations_and_gradients"), "gradcam"),
    **dict.fromkeys(("FILLS", "occluded_scores", "occlusion_map"), "occlusion"),
    **dict.fromkeys(("ImageScorer", "classifier_scorer", "reference_input", "source_rgb"), "scoring"),
    **dict.fromkeys(("window_map", "window_scores"), "windows"),
}

__all__ = sorted(_MODULE_OF)


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)

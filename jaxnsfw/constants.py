"""Facts of the reference pipeline and the network, in one JAX-free, Pillow-free module.

Every other module (the Pillow preprocessing, jaxprep, the explain parser, the worker processes
that must start without JAX) reads these from here, so there is one copy of each.
"""

from __future__ import annotations

# classify_nsfw.py: resize to 256x256, JPEG round trip, centre crop 224, BGR minus the mean.
RESIZE = (256, 256)
CROP = 224
MEAN_BGR = (104.0, 117.0, 123.0)

# open_nsfw's output order: prob[1] is the NSFW score.
CLASS_INDEX = {"sfw": 0, "nsfw": 1}

# Animations longer than this are sampled evenly (first and last frame included), so that a file
# with 100,000 tiny frames cannot take unbounded time.
MAX_FRAMES = 256

# Robust mode keeps at most this many decoded pixels (summed over the frames it scores) of one
# file: a long animation of large frames has its frames sampled down to fit, so that peak memory
# stays bounded whatever the file holds.
MAX_VIEW_PIXELS = 64_000_000

# Explanation methods, named here so that building the `explain` parser imports no JAX.
PERTURBATION_METHODS = ("occlusion", "windows")
GRADIENT_METHODS = ("saliency", "guided", "deconvnet")
EXPLAIN_METHODS = PERTURBATION_METHODS + GRADIENT_METHODS + ("gradcam",)
OCCLUSION_FILLS = ("grey", "mean", "black", "blur")
GRADCAM_DEFAULT_LAYER = "relu_stage3_block2"

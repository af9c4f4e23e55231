"""The open_nsfw ResNet in Flax, layer for layer as Caffe runs it.

Module and variable names are the Caffe layer names (conv_1, bn_1, scale_1, ...), so a Caffe
layer, its Flax variables and its output in `layer_outputs` all share one name. Input is Caffe's
`data` blob in NHWC: BGR, 0..255 minus the mean (104, 117, 123).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnsfw.config import ResNetConfig
from jaxnsfw.pooling import caffe_ave_pool, caffe_max_pool

# Caffe computes in float32 throughout; on GPUs XLA would otherwise use TF32 for convolutions.
PRECISION = lax.Precision.HIGHEST


class ModelOutput(NamedTuple):
    # jax.Arrays from the model; NumPy arrays on the host from Classifier.forward.
    embedding: jax.Array | np.ndarray  # (N, 1024): the global-pool features, in Caffe's NCHW flatten order
    logits: jax.Array | np.ndarray  # (N, 2): fc_nsfw, [sfw, nsfw]
    probs: jax.Array | np.ndarray  # (N, 2): softmax of the logits; probs[:, 1] is the NSFW score


class CaffeBatchNorm(nn.Module):
    """Inference BatchNorm in Caffe's order: (x - mean) / sqrt(var + eps), no affine part.

    `mean` and `var` are the stored statistics already divided by Caffe's moving-average
    factor (the converter does that, as BatchNormLayer::Forward_cpu does)."""

    eps: float

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32).value
        var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32).value
        return (x - mean) / jnp.sqrt(var + jnp.float32(self.eps))


class CaffeScale(nn.Module):
    """Caffe's Scale layer with bias_term: x * scale + bias, per channel."""

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        return x * scale + bias


class PointwiseConv(nn.Module):
    """A 1x1 convolution as one matrix product over the (strided) pixels: nn.Conv's variables
    (kernel (1, 1, in, out), bias) and, on CPU, the same scores bit for bit at less cost."""

    features: int
    stride: int
    precision: lax.Precision
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (1, 1, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        if self.stride > 1:
            x = x[:, ::self.stride, ::self.stride, :]
        y = lax.dot_general(x.astype(self.dtype), kernel[0, 0].astype(self.dtype), (((3,), (0,)), ((), ())),
                            precision=self.precision)
        return y + bias.astype(self.dtype)


class OpenNSFW(nn.Module):
    """ResNet-50-1by2 with projection shortcuts and 1x1 stride-2 downsampling (ResNet v1)."""

    config: ResNetConfig = ResNetConfig()
    # float32: XLA's own convolutions (fast). float64: each convolution accumulates in float64 and
    # is rounded once to float32, so the only float32 error left is Caffe's own rounding; this is
    # what keeps even ill-conditioned (flat) images within 1e-6 of Caffe. Needs jax.enable_x64().
    conv_accumulation: str = "float32"
    # True: BatchNorm+Scale are folded into each conv's kernel and bias (fold_batch_norm); the
    # variables then hold no batch_stats and no scale_* params.
    folded_batch_norm: bool = False
    # Hooks for jaxnsfw.explain; the defaults leave the network and its variables exactly as they are.
    # `relu` is the function every ReLU layer applies: explanations pass ReLUs with custom VJP rules
    # (deconvnet, guided backprop) so that the same module and weights give their backward passes.
    relu: Callable[[jax.Array], jax.Array] = nn.relu
    # ReLU layers whose output gets a Flax perturbation (`perturb`: a zero in the 'perturbations'
    # collection added to it), so the gradient with respect to that output can be taken (Grad-CAM).
    perturbed_layers: tuple[str, ...] = ()

    def _conv_bn_scale(self, x, suffix: str, features: int, kernel: int, stride: int, pad: int):
        dtype = jnp.dtype(self.conv_accumulation)
        if dtype == jnp.float64 and not jax.config.read("jax_enable_x64"):
            raise ValueError("conv_accumulation='float64' needs 64-bit JAX: run inside `with jax.enable_x64(True):`")
        if kernel == 1 and pad == 0:
            x = PointwiseConv(features, stride, PRECISION, dtype, name=f"conv_{suffix}")(x).astype(jnp.float32)
        else:
            x = nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                        precision=PRECISION, dtype=dtype, name=f"conv_{suffix}")(x).astype(jnp.float32)
        if self.folded_batch_norm:
            return x
        x = CaffeBatchNorm(self.config.batch_norm_eps, name=f"bn_{suffix}")(x)
        return CaffeScale(name=f"scale_{suffix}")(x)

    def _relu(self, x, name: str):
        x = self.relu(x)
        if name in self.perturbed_layers:
            x = self.perturb(name, x)
        self.sow("intermediates", name, x)
        return x

    def _bottleneck(self, x, stage: int, block: int, width: int, stride: int):
        prefix = f"stage{stage}_block{block}"
        out_features = width * self.config.expansion
        if block == 0:
            shortcut = self._conv_bn_scale(x, f"{prefix}_proj_shortcut", out_features, 1, stride, 0)
        else:
            shortcut = x
        y = self._conv_bn_scale(x, f"{prefix}_branch2a", width, 1, stride, 0)
        y = self._relu(y, f"relu_{prefix}_branch2a")
        y = self._conv_bn_scale(y, f"{prefix}_branch2b", width, 3, 1, 1)
        y = self._relu(y, f"relu_{prefix}_branch2b")
        y = self._conv_bn_scale(y, f"{prefix}_branch2c", out_features, 1, 1, 0)
        x = shortcut + y
        self.sow("intermediates", f"eltwise_{prefix}", x)
        return self._relu(x, f"relu_{prefix}")

    @nn.compact
    def __call__(self, data: jax.Array) -> ModelOutput:
        cfg = self.config
        x = self._conv_bn_scale(data, "1", cfg.stem_features, cfg.stem_kernel, cfg.stem_stride, cfg.stem_padding)
        x = self._relu(x, "relu_1")
        x = caffe_max_pool(x, cfg.stem_pool_kernel, cfg.stem_pool_stride)
        self.sow("intermediates", "pool1", x)
        for stage, (blocks, width, stride) in enumerate(zip(cfg.stage_sizes, cfg.stage_widths, cfg.stage_strides)):
            for block in range(blocks):
                x = self._bottleneck(x, stage, block, width, stride if block == 0 else 1)
        x = caffe_ave_pool(x, cfg.head_pool_kernel, 1)
        self.sow("intermediates", "pool", x)
        # InnerProduct flattens Caffe's NCHW blob; flattening in that order keeps fc weights as Caffe's.
        embedding = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        logits = nn.Dense(cfg.num_classes, precision=PRECISION, name=cfg.classifier_name)(embedding)
        probs = jax.nn.softmax(logits, axis=-1)
        self.sow("intermediates", "prob", probs)
        return ModelOutput(embedding=embedding, logits=logits, probs=probs)


def variable_shapes(config: ResNetConfig) -> dict:
    """The Flax variables the module expects, as ShapeDtypeStructs (nothing is computed)."""
    model = OpenNSFW(config)
    data = jax.ShapeDtypeStruct((1, config.input_size, config.input_size, config.input_channels), jnp.float32)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), data)


def layer_outputs(model: nn.Module, variables: dict, data: jax.Array) -> tuple[ModelOutput, dict[str, jax.Array]]:
    """The forward pass plus every layer's own output keyed by Caffe layer name (NHWC).

    In Caffe, in-place layers overwrite their bottom blob, so Caffe's blob `conv_1` after a
    forward pass is the output of layer `relu_1` here, `eltwise_stage0_block2` that of
    `relu_stage0_block2`; the layer_out/ entries of the reference data are the layers' own."""
    output, state = model.apply(variables, data, capture_intermediates=True, mutable=["intermediates"])
    outputs = {}
    for name, value in state["intermediates"].items():
        # Submodules (conv/bn/scale/fc) are captured as {"__call__": (y,)}; the rest are sown as (y,).
        outputs[name] = value["__call__"][0] if isinstance(value, dict) else value[0]
    return output, outputs


def caffe_blob_writer(blob: str) -> str:
    """The layer whose output Caffe's blob `blob` holds after a forward pass.

    In-place layers overwrite their bottom blob: `conv_1` ends as relu_1's output, a branch2c or
    shortcut convolution's blob as its Scale's, an eltwise sum as its ReLU's."""
    if blob.startswith("eltwise_"):
        return "relu_" + blob[len("eltwise_"):]
    if blob.startswith("conv_"):
        suffix = blob[len("conv_"):]
        ends_in_relu = suffix == "1" or suffix.endswith(("_branch2a", "_branch2b"))
        return f"relu_{suffix}" if ends_in_relu else f"scale_{suffix}"
    return blob


def fold_batch_norm(variables: dict, config: ResNetConfig) -> dict:
    """Variables for OpenNSFW(folded_batch_norm=True): every conv's kernel times
    a = gamma / sqrt(var + eps) and bias (bias - mean) * a + beta, computed in float64 and rounded
    once to float32, so BatchNorm and Scale cost nothing at run time."""
    import numpy as np

    params, stats = variables["params"], variables["batch_stats"]
    folded = {}
    for name, layer in params.items():
        if name.startswith(("bn_", "scale_")):
            continue
        if not name.startswith("conv_"):
            folded[name] = layer
            continue
        suffix = name[len("conv_"):]
        bn, scale = stats[f"bn_{suffix}"], params[f"scale_{suffix}"]
        a = np.asarray(scale["scale"], np.float64) / np.sqrt(np.asarray(bn["var"], np.float64) + config.batch_norm_eps)
        kernel = np.asarray(layer["kernel"], np.float64) * a
        bias = ((np.asarray(layer["bias"], np.float64) - np.asarray(bn["mean"], np.float64)) * a
                + np.asarray(scale["bias"], np.float64))
        folded[name] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return {"params": folded}

"""What closes the gap between jaxnsfw's XLA CPU forward pass and onnxruntime's?

    python bench/forward_speed.py                  # every variant, batches 1/8/32, plus flag runs
    python bench/forward_speed.py --quick          # fewer rounds (a rough look)
    python bench/forward_speed.py --variants current,folded --batches 8 --no-subprocess-flags

Each variant is the same network, built from the same checkpoint variables
(`jaxnsfw.checkpoint.read_checkpoint(None)`), written directly with jax.lax so that one thing at a
time can change: data layout (NHWC/NCHW), kernel layout (HWIO/OIHW), BatchNorm+Scale folded into the
conv weights, 1x1 convolutions as dot_general, conv precision, weights as jit arguments or as
compile-time constants, input donation, and per-compile XLA options (`compiler_options`, which XLA
validates: an unknown name fails the compile). Flags that only act at process start (XLA_FLAGS such
as --xla_cpu_multi_thread_eigen or several host devices) run in a subprocess.

For every variant it prints images/s per batch size (median over interleaved rounds: the machine is
shared, so contenders alternate round by round instead of running one after the other) and the
largest |score difference| against the current model (jaxnsfw.Classifier, float32) and against Caffe
on the 75 reference images' exact input blobs (rgb256 after the JPEG round trip, from
../shared/caffe_reference/scores.npz).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing it

from jaxnsfw import checkpoint, preprocess  # noqa: E402
from jaxnsfw.classifier import Classifier  # noqa: E402
from jaxnsfw.config import ResNetConfig  # noqa: E402
from jaxnsfw.pooling import caffe_pool_output_size  # noqa: E402

REFERENCE = REPO.parent / "shared" / "caffe_reference"  # ../shared beside this checkout


# ----------------------------------------------------------------------------------------------
# Variants


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    data_layout: str = "NHWC"  # layout the network runs in (input is transposed inside jit)
    kernel_layout: str = "HWIO"  # layout conv kernels are stored in (transposed at load time)
    fold_bn: bool = False  # BatchNorm+Scale folded into conv kernel/bias (float64, rounded once)
    bn_as_affine: bool = False  # BN+Scale as one x*a+b per channel, not folded into the conv
    dot_1x1: bool = False  # 1x1 convolutions as dot_general on (strided) pixels
    precision: str | None = "HIGHEST"  # lax.Precision name for conv/dot, None = default
    constant_weights: bool = False  # weights closed over (compile-time constants), not arguments
    donate_input: bool = False
    compiler_options: tuple[tuple[str, object], ...] = ()  # per-compile XLA DebugOptions
    batch_streams: int = 1  # the batch as this many independent sub-graphs inside one jit
    note: str = ""


def _opts(**options) -> tuple:
    return tuple(sorted(options.items()))


VARIANTS = [
    Variant("current", note="jaxnsfw.Classifier().forward (Flax, NHWC/HWIO, HIGHEST), host in/out"),
    Variant("lax", note="same maths as current, plain lax, device input"),
    Variant("lax_default_precision", precision=None),
    Variant("nchw_oihw", data_layout="NCHW", kernel_layout="OIHW"),
    Variant("nhwc_oihw", kernel_layout="OIHW"),
    Variant("nchw_hwio", data_layout="NCHW", kernel_layout="HWIO"),
    Variant("dot_1x1", dot_1x1=True),
    Variant("bn_affine", bn_as_affine=True),
    Variant("folded", fold_bn=True),
    Variant("folded_dot_1x1", fold_bn=True, dot_1x1=True),
    Variant("folded_constants", fold_bn=True, constant_weights=True),
    Variant("lax_donate", donate_input=True),
    Variant("two_streams", batch_streams=2),
    Variant("folded_two_streams", fold_bn=True, batch_streams=2),
    Variant("folded_four_streams", fold_bn=True, batch_streams=4),
    Variant("fast_math", compiler_options=_opts(xla_cpu_enable_fast_math=True)),
    # jaxlib 0.10.2 already runs convolutions and dots through YNNPACK (XLA's "__ynn_fusion",
    # default fusion types INDIVIDUAL_CONVOLUTION + INDIVIDUAL_DOT); these change what goes there.
    Variant("ynn_off", compiler_options=_opts(xla_cpu_experimental_ynn_fusion_type=""),
            note="no YNNPACK: XLA's own (Eigen) conv/dot"),
    Variant("folded_ynn_off", fold_bn=True, compiler_options=_opts(xla_cpu_experimental_ynn_fusion_type=""),
            note="folded BN, no YNNPACK: XLA's own (Eigen) conv/dot"),
    Variant("folded_dot_1x1_ynn_off", fold_bn=True, dot_1x1=True,
            compiler_options=_opts(xla_cpu_experimental_ynn_fusion_type="")),
    Variant("ynn_conv_only", compiler_options=_opts(
        xla_cpu_experimental_ynn_fusion_type="LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION")),
    Variant("ynn_plus_eltwise", compiler_options=_opts(xla_cpu_experimental_ynn_fusion_type=(
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_ELTWISE"))),
    Variant("folded_ynn_plus_eltwise", fold_bn=True, compiler_options=_opts(xla_cpu_experimental_ynn_fusion_type=(
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_ELTWISE"))),
    Variant("ynn_dot_fusion", compiler_options=_opts(xla_cpu_experimental_ynn_fusion_type=(
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE"))),
    Variant("xnn_graph", compiler_options=_opts(
        xla_cpu_experimental_xnn_graph_fusion_mode="XNN_GRAPH_FUSION_MODE_GREEDY")),
    Variant("xnn_dot_eltwise", compiler_options=_opts(
        xla_cpu_experimental_xnn_fusion_type="LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE")),
    Variant("onednn_dot_eltwise", compiler_options=_opts(
        xla_cpu_experimental_onednn_fusion_type="LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE")),
    Variant("no_platform_math", compiler_options=_opts(xla_cpu_enable_platform_dependent_math=False)),
    Variant("opt_fast_runtime", compiler_options=_opts(xla_cpu_opt_preset="CPU_OPT_PRESET_FAST_RUNTIME")),
]
VARIANTS_BY_NAME = {v.name: v for v in VARIANTS}

# Process-level XLA_FLAGS (read once when the CPU backend starts): each set runs in a subprocess
# with the listed variants. `split_devices` runs the batch as one shard per host device.
FLAG_RUNS = {
    "eigen_single_thread": ("--xla_cpu_multi_thread_eigen=false", ["lax", "folded"]),
    "two_devices_split": ("--xla_force_host_platform_device_count=2",
                          ["lax", "folded", "folded_ynn_off", "folded_dot_1x1", "folded_dot_1x1_ynn_off"]),
    "two_devices_split_single_eigen": (
        "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false", ["folded"]),
}


# ----------------------------------------------------------------------------------------------
# Weights


def _bottleneck_names(config: ResNetConfig):
    """(stage, block, prefix, stride) for every bottleneck, in network order."""
    for stage, (blocks, stride) in enumerate(zip(config.stage_sizes, config.stage_strides)):
        for block in range(blocks):
            yield stage, block, f"stage{stage}_block{block}", stride if block == 0 else 1


def conv_suffixes(config: ResNetConfig) -> list[str]:
    names = ["1"]
    for _, block, prefix, _ in _bottleneck_names(config):
        if block == 0:
            names.append(f"{prefix}_proj_shortcut")
        names += [f"{prefix}_branch2a", f"{prefix}_branch2b", f"{prefix}_branch2c"]
    return names


def prepare_weights(variables: dict, config: ResNetConfig, variant: Variant) -> dict:
    """Per conv suffix: kernel (in the variant's layout) and bias, plus the BN/Scale terms unless
    folded. Folding happens in float64 and is rounded to float32 once."""
    params, stats = variables["params"], variables["batch_stats"]
    eps = np.float64(config.batch_norm_eps)
    weights = {}
    for suffix in conv_suffixes(config):
        kernel = np.asarray(params[f"conv_{suffix}"]["kernel"], np.float64)  # HWIO
        conv_bias = np.asarray(params[f"conv_{suffix}"]["bias"], np.float64)
        mean = np.asarray(stats[f"bn_{suffix}"]["mean"], np.float64)
        var = np.asarray(stats[f"bn_{suffix}"]["var"], np.float64)
        gamma = np.asarray(params[f"scale_{suffix}"]["scale"], np.float64)
        beta = np.asarray(params[f"scale_{suffix}"]["bias"], np.float64)
        entry = {}
        if variant.fold_bn:
            factor = gamma / np.sqrt(var + eps)
            kernel = kernel * factor
            entry["bias"] = ((conv_bias - mean) * factor + beta).astype(np.float32)
        elif variant.bn_as_affine:
            factor = gamma / np.sqrt(var + eps)
            entry["bias"] = conv_bias.astype(np.float32)
            entry["bn_mul"] = factor.astype(np.float32)
            entry["bn_add"] = (beta - mean * factor).astype(np.float32)
        else:
            # The stored float32 values, unchanged (float64 copies of float32 round back exactly).
            for key, value in (("bias", conv_bias), ("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)):
                entry[key] = value.astype(np.float32)
        kernel = kernel.astype(np.float32)
        if variant.kernel_layout == "OIHW":
            kernel = kernel.transpose(3, 2, 0, 1)
        entry["kernel"] = np.ascontiguousarray(kernel)
        weights[suffix] = entry
    fc = params[config.classifier_name]
    weights["fc"] = {"kernel": np.asarray(fc["kernel"], np.float32), "bias": np.asarray(fc["bias"], np.float32)}
    return weights


# ----------------------------------------------------------------------------------------------
# Forward pass


def _precision(variant: Variant):
    return None if variant.precision is None else lax.Precision[variant.precision]


def _channel_axis(variant: Variant) -> int:
    return 3 if variant.data_layout == "NHWC" else 1


def _per_channel(vector: jax.Array, variant: Variant) -> jax.Array:
    return vector if variant.data_layout == "NHWC" else vector[:, None, None]


def conv(x, entry, stride: int, pad: int, variant: Variant):
    kernel = entry["kernel"]
    is_1x1 = kernel.shape[0] == 1 if variant.kernel_layout == "HWIO" else kernel.shape[2] == 1
    if variant.dot_1x1 and is_1x1:
        if stride > 1:  # a strided 1x1 conv only reads every stride-th pixel
            x = x[:, ::stride, ::stride, :] if variant.data_layout == "NHWC" else x[:, :, ::stride, ::stride]
        matrix = kernel[0, 0] if variant.kernel_layout == "HWIO" else kernel[:, :, 0, 0].T  # (I, O)
        if variant.data_layout == "NHWC":
            y = lax.dot_general(x, matrix, (((3,), (0,)), ((), ())), precision=_precision(variant))
        else:  # (N, C, H, W) x (C, O) -> (N, H, W, O) -> NCHW
            y = lax.dot_general(x, matrix, (((1,), (0,)), ((), ())), precision=_precision(variant))
            y = jnp.transpose(y, (0, 3, 1, 2))
    else:
        dims = (variant.data_layout, variant.kernel_layout, variant.data_layout)
        y = lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                     dimension_numbers=dims, precision=_precision(variant))
    return y + _per_channel(entry["bias"], variant)


def batch_norm_scale(y, entry, eps: float, variant: Variant):
    if variant.fold_bn:
        return y
    if variant.bn_as_affine:
        return y * _per_channel(entry["bn_mul"], variant) + _per_channel(entry["bn_add"], variant)
    # Caffe's order, as jaxnsfw.model: (x - mean) / sqrt(var + eps), then * gamma + beta.
    y = (y - _per_channel(entry["mean"], variant)) / _per_channel(jnp.sqrt(entry["var"] + jnp.float32(eps)), variant)
    return y * _per_channel(entry["gamma"], variant) + _per_channel(entry["beta"], variant)


def conv_bn_scale(x, weights, suffix, stride, pad, config, variant):
    return batch_norm_scale(conv(x, weights[suffix], stride, pad, variant), weights[suffix],
                            config.batch_norm_eps, variant)


def _caffe_pool_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    pooled = caffe_pool_output_size(size, kernel, stride)
    return 0, max(0, (pooled - 1) * stride + kernel - size)


def caffe_pool(x, kernel: int, stride: int, kind: str, variant: Variant):
    """Caffe's ceil-mode MAX / AVE pooling (no padding) in either layout."""
    spatial = (1, 2) if variant.data_layout == "NHWC" else (2, 3)
    window = [1, 1, 1, 1]
    strides = [1, 1, 1, 1]
    padding = [(0, 0)] * 4
    for axis in spatial:
        window[axis], strides[axis] = kernel, stride
        padding[axis] = _caffe_pool_padding(x.shape[axis], kernel, stride)
    if kind == "max":
        return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, padding)
    summed = lax.reduce_window(x, 0.0, lax.add, window, strides, padding)
    # No padding here, so Caffe's divisor is the clipped window, which for the head pool (7 over
    # 7x7) is the whole window.
    return summed / jnp.float32(kernel * kernel)


def forward(weights: dict, data: jax.Array, config: ResNetConfig, variant: Variant) -> jax.Array:
    """NSFW probabilities (N,) for NHWC Caffe input blobs."""
    streams = variant.batch_streams
    if streams > 1 and data.shape[0] % streams == 0:
        # Independent sub-graphs: XLA's CPU thunk executor may run them at the same time, one per
        # core, where one graph keeps a core idle between (mostly single-threaded) ops.
        single = dataclasses.replace(variant, batch_streams=1)
        parts = jnp.split(data, streams)
        return jnp.concatenate([forward(weights, part, config, single) for part in parts])
    x = data if variant.data_layout == "NHWC" else jnp.transpose(data, (0, 3, 1, 2))
    x = conv_bn_scale(x, weights, "1", config.stem_stride, config.stem_padding, config, variant)
    x = caffe_pool(jax.nn.relu(x), config.stem_pool_kernel, config.stem_pool_stride, "max", variant)
    for _, block, prefix, stride in _bottleneck_names(config):
        if block == 0:
            shortcut = conv_bn_scale(x, weights, f"{prefix}_proj_shortcut", stride, 0, config, variant)
        else:
            shortcut = x
        y = jax.nn.relu(conv_bn_scale(x, weights, f"{prefix}_branch2a", stride, 0, config, variant))
        y = jax.nn.relu(conv_bn_scale(y, weights, f"{prefix}_branch2b", 1, 1, config, variant))
        y = conv_bn_scale(y, weights, f"{prefix}_branch2c", 1, 0, config, variant)
        x = jax.nn.relu(shortcut + y)
    x = caffe_pool(x, config.head_pool_kernel, 1, "ave", variant)
    # Caffe's NCHW flatten order for fc_nsfw (the pooled map is 1x1 here, so it is a reshape).
    embedding = (jnp.transpose(x, (0, 3, 1, 2)) if variant.data_layout == "NHWC" else x).reshape(x.shape[0], -1)
    logits = jnp.dot(embedding, weights["fc"]["kernel"], precision=_precision(variant)) + weights["fc"]["bias"]
    return jax.nn.softmax(logits, axis=-1)[:, 1]


class CompiledVariant:
    """One variant compiled once per batch size; __call__ takes a device array, returns scores."""

    def __init__(self, variables: dict, config: ResNetConfig, variant: Variant):
        self.variant = variant
        self.config = config
        self.weights = jax.device_put(prepare_weights(variables, config, variant))
        self._compiled = {}

    def _compile(self, batch: int):
        variant, config = self.variant, self.config
        spec = jax.ShapeDtypeStruct((batch, config.input_size, config.input_size, config.input_channels), jnp.float32)
        options = dict(variant.compiler_options)
        if variant.constant_weights:
            weights = self.weights
            fn = jax.jit(lambda data: forward(weights, data, config, variant),
                         donate_argnums=(0,) if variant.donate_input else ())
            return fn.lower(spec).compile(compiler_options=options)
        fn = jax.jit(lambda weights, data: forward(weights, data, config, variant),
                     donate_argnums=(1,) if variant.donate_input else ())
        compiled = fn.lower(self.weights, spec).compile(compiler_options=options)
        return lambda data: compiled(self.weights, data)

    def __call__(self, data: jax.Array) -> jax.Array:
        batch = data.shape[0]
        if batch not in self._compiled:
            self._compiled[batch] = self._compile(batch)
        return self._compiled[batch](data)


class CurrentModel:
    """The shipped path: Classifier().forward with host numpy in and out (what users call)."""

    def __init__(self):
        self.classifier = Classifier()

    def __call__(self, data) -> np.ndarray:
        return self.classifier.forward(np.asarray(data)).probs[:, 1]


# ----------------------------------------------------------------------------------------------
# Measurements


def reference_inputs() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Keys, exact Caffe input blobs (N, 224, 224, 3) and Caffe's nsfw scores of the reference
    images that Caffe scored."""
    scores = json.loads((REFERENCE / "scores.json").read_text())
    arrays = np.load(REFERENCE / "scores.npz")
    keys = sorted(k for k in scores if k != "__meta__" and "nsfw" in scores[k])
    blobs = np.stack([preprocess.caffe_input(arrays[f"{k}/rgb256_u8"]) for k in keys])
    caffe = np.array([scores[k]["nsfw"] for k in keys], np.float64)
    return keys, blobs, caffe


def run_scores(model, blobs: np.ndarray, batch: int = 32) -> np.ndarray:
    """Scores of all blobs, in batches of `batch` (the last one zero-padded)."""
    out = []
    for start in range(0, len(blobs), batch):
        chunk = blobs[start:start + batch]
        padded = np.zeros((batch,) + chunk.shape[1:], np.float32)
        padded[:len(chunk)] = chunk
        data = padded if isinstance(model, CurrentModel) else jnp.asarray(padded)
        out.append(np.asarray(model(data))[:len(chunk)])
    return np.concatenate(out).astype(np.float64)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _machine_busy() -> tuple[int, int]:
    """(idle + iowait, all) jiffies from /proc/stat, to tell how busy other processes kept the
    machine while a variant ran."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def time_calls(model, data, donate: bool, calls: int) -> tuple[float, float, float]:
    """(wall seconds, process CPU seconds, cores busy with other processes) for `calls` forward
    passes, results awaited. A donated input is consumed, so each call gets a fresh device copy
    (its copy time is counted, which is small next to a forward pass)."""
    busy0, cpu0, wall0 = _machine_busy(), _cpu_seconds(), time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(model(jnp.array(data, copy=True) if donate else data))
    wall, cpu, busy1 = time.perf_counter() - wall0, _cpu_seconds() - cpu0, _machine_busy()
    idle, total = busy1[0] - busy0[0], busy1[1] - busy0[1]
    machine = (os.cpu_count() or 1) * (1 - idle / total) if total else 0.0
    return wall, cpu, max(0.0, machine - cpu / wall)


def throughput(models: dict, batches: list[int], rounds: int, min_seconds: float) -> dict:
    """Per (model name, batch): images/s (median [min, max] over `rounds` interleaved rounds),
    process CPU ms per image and cores busy with other processes (medians). In each round every
    model runs ~min_seconds worth of calls, and the order rotates from round to round."""
    rng = np.random.default_rng(0)
    results = {}
    names = list(models)
    for batch in batches:
        host = rng.normal(0.0, 60.0, (batch, 224, 224, 3)).astype(np.float32)
        device = jnp.asarray(host)
        inputs = {name: host if isinstance(model, CurrentModel) else device for name, model in models.items()}
        donate = {name: getattr(getattr(model, "variant", None), "donate_input", False) for name, model in models.items()}
        calls = {}
        for name, model in models.items():  # compile + warm up, and size the calls per round
            time_calls(model, inputs[name], donate[name], 1)
            first = time_calls(model, inputs[name], donate[name], 1)[0]
            calls[name] = max(1, round(min_seconds / first))
        samples = {name: [] for name in models}
        for round_index in range(rounds):
            for name in names[round_index % len(names):] + names[:round_index % len(names)]:
                wall, cpu, others = time_calls(models[name], inputs[name], donate[name], calls[name])
                samples[name].append((batch * calls[name] / wall, 1000 * cpu / (batch * calls[name]), others))
        for name, values in samples.items():
            rates, cpu_ms, others = zip(*values)
            results[(name, batch)] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
                                      "cpu_ms": statistics.median(cpu_ms), "others": statistics.median(others)}
    return results


def build_models(names: list[str]) -> dict:
    variables, config, _ = checkpoint.read_checkpoint(None)
    models = {}
    for name in names:
        models[name] = CurrentModel() if name == "current" else CompiledVariant(variables, config, VARIANTS_BY_NAME[name])
    return models


def parity(models: dict) -> dict:
    """max |score - current| and max |score - caffe| over the reference images, per model."""
    _, blobs, caffe = reference_inputs()
    current = run_scores(models["current"], blobs) if "current" in models else run_scores(CurrentModel(), blobs)
    out = {}
    for name, model in models.items():
        scores = current if name == "current" else run_scores(model, blobs)
        out[name] = {"vs_current": float(np.max(np.abs(scores - current))),
                     "vs_caffe": float(np.max(np.abs(scores - caffe))),
                     "vs_caffe_median": float(np.median(np.abs(scores - caffe)))}
    return out


def run_in_process(names, batches, rounds, min_seconds, with_parity=True) -> dict:
    models = build_models(names)
    speed = throughput(models, batches, rounds, min_seconds)
    scores = parity(models) if with_parity else {}
    return {"speed": {f"{n}@{b}": v for (n, b), v in speed.items()}, "parity": scores}


# ----------------------------------------------------------------------------------------------
# Process-level XLA flags


class SplitAcrossDevices:
    """One shard of the batch per host device (XLA_FLAGS=--xla_force_host_platform_device_count)."""

    def __init__(self, inner: CompiledVariant):
        self.inner = inner
        self.variant = inner.variant
        self.devices = jax.devices()
        mesh = jax.sharding.Mesh(np.array(self.devices), ("batch",))
        self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
        self.replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        self.weights = jax.device_put(inner.weights, self.replicated)
        config, variant = inner.config, inner.variant
        self._fn = jax.jit(lambda weights, data: forward(weights, data, config, variant),
                           out_shardings=self.sharding, compiler_options=dict(variant.compiler_options) or None)

    def __call__(self, data):
        if data.shape[0] % len(self.devices):
            return self.inner(data)  # batch 1: nothing to split
        return self._fn(self.weights, jax.device_put(data, self.sharding))


def flag_run_main(run_name: str, batches, rounds, min_seconds) -> dict:
    """Inside the subprocess: the run's variants under its XLA_FLAGS."""
    _, names = FLAG_RUNS[run_name]
    models = build_models(names)
    if len(jax.devices()) > 1:
        models = {name: SplitAcrossDevices(model) for name, model in models.items()}
    speed = throughput(models, batches, rounds, min_seconds)
    scores = parity(models)
    return {"speed": {f"{run_name}:{n}@{b}": v for (n, b), v in speed.items()},
            "parity": {f"{run_name}:{n}": v for n, v in scores.items()}}


def run_flag_subprocess(run_name: str, batches, rounds, min_seconds) -> dict:
    flags, _ = FLAG_RUNS[run_name]
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip())
    cmd = [sys.executable, __file__, "--flag-run", run_name, "--batches", ",".join(map(str, batches)),
           "--rounds", str(rounds), "--min-seconds", str(min_seconds)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"flag run {run_name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return {"speed": {}, "parity": {}}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Report


def describe(name: str) -> str:
    if ":" in name:
        run, variant = name.split(":", 1)
        return f"`{FLAG_RUNS[run][0]}` + {variant}"
    variant = VARIANTS_BY_NAME[name]
    if variant.note:
        return variant.note
    changed = {f.name: getattr(variant, f.name) for f in dataclasses.fields(variant)
               if f.name not in ("name", "note") and getattr(variant, f.name) != f.default}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"


def table(result: dict, batches: list[int]) -> str:
    names = list(dict.fromkeys(key.rsplit("@", 1)[0] for key in result["speed"]))
    base = {b: result["speed"].get(f"current@{b}", {}).get("median") for b in batches}
    head = ["variant", "what changes"] + [f"img/s b{b} (x current), CPU ms/img" for b in batches] + [
        "max \\|Δ\\| vs current", "max (median) \\|Δ\\| vs caffe", "others"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in names:
        cells = [name, describe(name)]
        for b in batches:
            entry = result["speed"].get(f"{name}@{b}")
            if entry is None:
                cells.append("-")
                continue
            ratio = f" ({entry['median'] / base[b]:.2f}x)" if base[b] else ""
            cells.append(f"{entry['median']:.1f} [{entry['min']:.0f}-{entry['max']:.0f}]{ratio}, {entry['cpu_ms']:.1f}")
        p = result["parity"].get(name, {})
        cells += [f"{p['vs_current']:.2e}" if p else "-",
                  f"{p['vs_caffe']:.2e} ({p['vs_caffe_median']:.1e})" if p else "-"]
        others = [result["speed"][f"{name}@{b}"]["others"] for b in batches if f"{name}@{b}" in result["speed"]]
        cells.append(f"{statistics.median(others):.1f}" if others else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.6, help="time per model per round")
    parser.add_argument("--quick", action="store_true", help="3 rounds of ~0.3 s")
    parser.add_argument("--no-subprocess-flags", action="store_true", help="skip the XLA_FLAGS runs")
    parser.add_argument("--flag-run", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.quick:
        args.rounds, args.min_seconds = 3, 0.3
    if args.flag_run:
        print(json.dumps(flag_run_main(args.flag_run, batches, args.rounds, args.min_seconds)))
        return 0

    names = args.variants.split(",")
    if "current" not in names:
        names.insert(0, "current")
    print(f"jax {jax.__version__}, devices {jax.devices()}, cores {os.cpu_count()}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; {args.rounds} interleaved rounds of "
          f"~{args.min_seconds} s per variant and batch; img/s = median [min-max]", file=sys.stderr)
    result = run_in_process(names, batches, args.rounds, args.min_seconds)
    if not args.no_subprocess_flags:
        for run_name in FLAG_RUNS:
            sub = run_flag_subprocess(run_name, batches, args.rounds, args.min_seconds)
            result["speed"].update(sub["speed"])
            result["parity"].update(sub["parity"])
    text = table(result, batches) + (
        "\n\nRows named `run:variant` ran in their own process (XLA_FLAGS are read at start-up) after "
        "the others, so their '(x current)' compares two moments: trust it only where 'others' (cores busy "
        "with other processes) is ~0 for both. CPU ms/img is the least load-sensitive column.")
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

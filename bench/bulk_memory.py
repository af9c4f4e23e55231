"""Does a bulk run's memory stay flat as the number of inputs grows, and within bounds on one
long animation of large frames?

    python bench/bulk_memory.py [COUNT ...]   # default: 64 512 2048
    python bench/bulk_memory.py --animated [--frames N] [--size PIXELS] [--no-gif]
                                           [--no-device-preprocess] [--timeout SECONDS]

Inputs: runs `jaxnsfw score DIR --out FILE` over COUNT distinct copies of one small image (one pixel
changed each: the walk reads a file once, so links to one file would be one input) and reports the
peak resident memory of the main process and of the largest worker (getrusage of the children), the
wall time and the number of records written.

--animated: writes (deterministically, seeded) an animated PNG of 256 full frames of 2000x2000,
mostly flat so that it compresses to a few MB, and the same animation as a GIF, then scores each
file alone with `--workers 1` in robust mode (with and without --device-preprocess, which is slow
on a CPU and is given up after --timeout seconds) and in reference mode. Each run's peak RSS is
reported twice: the largest single process (wait4's ru_maxrss, the CLI or its worker), and the
peak of the sum over the whole process tree (main, forkserver/spawned workers, resource tracker),
polled from /proc every 50 ms. Before the frame budget, robust mode on such a PNG peaked at 4.38 GB
(0.38 GB in reference mode); the target is about 1 GB whatever the animation.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "tests" / "data" / "images" / "skimage__phantom.png"

WRAPPER = """
import resource, subprocess, sys
process = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(process.returncode)
"""


def run(count: int) -> tuple[float, int, int, int]:
    with tempfile.TemporaryDirectory() as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        from PIL import Image

        pixels = np.asarray(Image.open(IMAGE).convert("RGB")).copy()
        for i in range(count):
            pixels[0, 0] = (i % 256, i // 256 % 256, 0)
            Image.fromarray(pixels).save(inputs / f"{i:06d}.png")
        out = Path(folder) / "scores.jsonl"
        start = time.perf_counter()
        # A wrapper per run, so each run's peak is its own (ru_maxrss of the children is the
        # largest single process among the CLI and its workers, which is the CLI with JAX).
        result = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "jaxnsfw", "score", str(inputs),
                                 "--out", str(out), "--no-progress"], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        main_kib = int(result.stdout.strip().splitlines()[-1])
        records = out.read_text().count("\n")
    return wall, main_kib, records, count


def main(counts: list[int]) -> None:
    print("| inputs | records | wall s | inputs/s | peak RSS, largest process of the run (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for count in counts:
        wall, main_kib, records, _ = run(count)
        print(f"| {count} | {records} | {wall:.1f} | {count / wall:.1f} | {main_kib / 1024:.0f} |")


# --- The animated case ------------------------------------------------------------------------

SEED = 20240601
FRAMES = 256
SIZE = 2000
SQUARE = 160  # side of the coloured square that moves over the flat background
POLL_S = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")


def animation_frames(frames: int, size: int, seed: int = SEED) -> Iterator[np.ndarray]:
    """`frames` RGB frames of size x size, one at a time: a flat background whose grey drifts a
    little, and a square of a random colour at a random place (numpy seeded, so the same every run)."""
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        frame = np.empty((size, size, 3), np.uint8)
        frame[...] = rng.integers(96, 160, 3, dtype=np.uint8)
        x, y = rng.integers(0, size - SQUARE, 2)
        frame[y:y + SQUARE, x:x + SQUARE] = rng.integers(0, 256, 3, dtype=np.uint8)
        yield frame


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_apng(path: Path, frames: int, size: int, duration_ms: int = 40) -> None:
    """An animated PNG of full frames (each covering the whole canvas, as a decoder must composite
    and hold them), written frame by frame. Pillow's APNG writer keeps every frame until the end
    (3 GB here) and stores only the changed rectangle of each, hence this small writer."""
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)))
        out.write(_png_chunk(b"acTL", struct.pack(">II", frames, 0)))
        sequence = 0
        for index, frame in enumerate(animation_frames(frames, size)):
            # fcTL: sequence, width, height, x, y, delay num/den, dispose none, blend source.
            out.write(_png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, size, size, 0, 0,
                                                      duration_ms, 1000, 0, 0)))
            sequence += 1
            rows = np.concatenate([np.zeros((size, 1), np.uint8), frame.reshape(size, size * 3)], axis=1)
            data = zlib.compress(rows.tobytes(), 9)
            del rows
            if index == 0:
                out.write(_png_chunk(b"IDAT", data))
            else:
                out.write(_png_chunk(b"fdAT", struct.pack(">I", sequence) + data))
                sequence += 1
        out.write(_png_chunk(b"IEND", b""))


def _gif_blocks(data: bytes, offset: int) -> int:
    """The offset just past a run of GIF sub-blocks (ending with a zero-length one)."""
    while data[offset]:
        offset += data[offset] + 1
    return offset + 1


def write_gif(path: Path, frames: int, size: int, duration_ms: int = 40) -> None:
    """The same animation as a GIF, written frame by frame: each frame is quantised to one fixed
    palette and encoded by Pillow alone, and its image block spliced into one looping animation
    (Pillow's own animated GIF writer keeps every frame until the end)."""
    from PIL import Image

    palette = Image.new("P", (1, 1))
    levels = np.arange(6, dtype=np.uint8) * 51  # the 6x6x6 web palette
    colours = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    palette.putpalette(np.concatenate([colours, np.zeros((256 - len(colours), 3), np.uint8)]).tobytes())
    with open(path, "wb") as out:
        for index, frame in enumerate(animation_frames(frames, size)):
            quantised = Image.fromarray(frame, "RGB").quantize(palette=palette, dither=Image.Dither.NONE)
            del frame
            single = io.BytesIO()
            quantised.save(single, "GIF", optimize=False)
            del quantised
            data = single.getvalue()
            flags = data[10]
            offset = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
            if index == 0:
                out.write(data[:offset])  # header, screen descriptor, global colour table
                out.write(b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00")  # loop forever
            while data[offset] == 0x21:  # skip Pillow's own extensions
                offset = _gif_blocks(data, offset + 2)
            if data[offset] != 0x2C:
                raise ValueError(f"unexpected GIF block {data[offset]:#x} from Pillow")
            start = offset
            local = data[offset + 9]
            offset += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0)
            offset = _gif_blocks(data, offset + 1)  # LZW minimum code size, then the data
            out.write(b"\x21\xf9\x04\x00" + struct.pack("<H", duration_ms // 10) + b"\x00\x00")
            out.write(data[start:offset])
        out.write(b"\x3b")


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        ppid = int(text[text.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree_rss(root: int) -> int:
    """Bytes resident in `root` and all its descendants, now."""
    children, total, stack = _children(), 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * PAGE
        except OSError:
            pass
        stack.extend(children.get(pid, ()))
    return total


@dataclass
class Measured:
    wall_s: float
    largest_kib: int  # ru_maxrss of the largest single process of the tree
    tree_peak: int  # bytes
    returncode: int | None  # None: killed at the timeout
    record: dict | None


def measure(command: list[str], out: Path, timeout: float) -> Measured:
    """Run `command` in its own session; poll its tree's RSS until it ends (or kill the session
    after `timeout` seconds)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    peak, done = [0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(process.pid))
            done.wait(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stderr = []
    reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)
    reader.start()
    timed_out = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            _, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(POLL_S)
    wall = time.perf_counter() - start
    done.set()
    poller.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join(5)
    if timed_out:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # any worker left behind
        except ProcessLookupError:
            pass
    elif process.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: "
                           f"{stderr[0].decode(errors='replace')[-2000:] if stderr else ''}")
    record = None
    if not timed_out and out.exists() and out.stat().st_size:
        record = json.loads(out.read_text().splitlines()[0])
    return Measured(wall, usage.ru_maxrss, peak[0], None if timed_out else process.returncode, record)


def frames_scored(path: Path, mode: str) -> tuple[int, int]:
    """(frames robust/reference mode scores in this file, frames it holds), from views.py's budget."""
    from PIL import Image

    from jaxnsfw.constants import MAX_FRAMES
    from jaxnsfw.views import frame_budget, frame_count, sampled_frames

    with Image.open(path) as image:
        count = frame_count(image)
        if mode == "reference":
            return 1, count
        return len(sampled_frames(count, frame_budget(image.size, MAX_FRAMES))), count


def animated(frames: int, size: int, gif: bool, device_preprocess: bool, timeout: float) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = [("APNG", Path(folder) / "animation.png", write_apng)]
        if gif:
            files.append(("GIF", Path(folder) / "animation.gif", write_gif))
        for kind, path, writer in files:
            began = time.perf_counter()
            writer(path, frames, size)
            print(f"{kind}: {frames} frames of {size}x{size}, {path.stat().st_size / 1e6:.2f} MB, written in "
                  f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
            cases = [("robust", []), ("reference", [])]
            if device_preprocess:
                cases.insert(1, ("robust", ["--device-preprocess"]))
            for mode, extra in cases:
                scored, count = frames_scored(path, mode)
                out = Path(folder) / "scores.jsonl"
                out.unlink(missing_ok=True)
                command = [sys.executable, "-m", "jaxnsfw", "score", str(path), "--mode", mode, "--workers", "1",
                           "--out", str(out), "--no-progress", *extra]
                label = " ".join([mode, *extra])
                print(f"running {kind} {label} ({scored} of {count} frames scored)...", file=sys.stderr)
                result = measure(command, out, timeout)
                rows.append((f"{kind} {count}x{size}x{size} ({path.stat().st_size / 1e6:.1f} MB)", label, scored,
                             result))
                print(f"  {result}", file=sys.stderr)
    print("| case | mode | frames scored | peak RSS largest process (MiB) | peak RSS tree (MiB) | wall s | score "
          "| frame, view |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for case, label, scored, result in rows:
        if result.returncode is None:
            print(f"| {case} | {label} | {scored} | >= {result.largest_kib / 1024:.0f} (killed) | "
                  f">= {result.tree_peak / 2**20:.0f} | > {result.wall_s:.0f} (timeout) | did not finish | |")
            continue
        record = result.record or {}
        score = f"{record['score']:.6f}" if record.get("score") is not None else f"error: {record.get('error')}"
        print(f"| {case} | {label} | {scored} | {result.largest_kib / 1024:.0f} | {result.tree_peak / 2**20:.0f} | "
              f"{result.wall_s:.1f} | {score} | {record.get('frame')}, {record.get('view')} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("counts", nargs="*", type=int, metavar="COUNT", help="inputs per run (64 512 2048)")
    parser.add_argument("--animated", action="store_true", help="the animated case instead (see above)")
    parser.add_argument("--frames", type=int, default=FRAMES, help=f"frames of the animation ({FRAMES})")
    parser.add_argument("--size", type=int, default=SIZE, help=f"side of each frame in pixels ({SIZE})")
    parser.add_argument("--no-gif", dest="gif", action="store_false", help="the APNG only")
    parser.add_argument("--no-device-preprocess", dest="device_preprocess", action="store_false",
                        help="skip the robust --device-preprocess runs")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on a run after this many seconds (300)")
    args = parser.parse_args()
    if args.animated:
        animated(args.frames, args.size, args.gif, args.device_preprocess, args.timeout)
    else:
        main(args.counts or [64, 512, 2048])

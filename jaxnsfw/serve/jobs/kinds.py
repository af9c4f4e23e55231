"""What each kind of job does, and what it needs at submission.

    explain  one uploaded image (`file`); options: ExplainOptions' fields (method, box, stride, ...)
    atlas    uploaded images (`files`) or one embeddings file (`embeddings`); options: grid, tile,
             perplexity, seed, color_by (jaxnsfw.atlas.run_job's)
    score    a folder on the server (`folder`, under a --score-root); options: recursive, mode.
             The records are `jaxnsfw score`'s (records.jsonl)

Each runs in the runner's thread with `progress(fraction, stage)`, writes into the job's output
folder and returns the names of the files it wrote. JobInputError: the job's own input is wrong
(at submission: 400; while running: the job fails with the message).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jaxnsfw.serve.jobs.store import Job

KINDS = ("explain", "atlas", "score")
Progress = Callable[[float, str], None]


class JobInputError(ValueError):
    """The job's input or options are wrong; the message says how."""


@dataclass(frozen=True)
class JobContext:
    """What a running job may use of the service: its classifier, and its pixel limit (None:
    Pillow's), which the score job's workers apply as the request path's do."""

    classifier: Any
    max_pixels: int | None = None


def check_options(kind: str, options: dict, uploads: int, has_embeddings: bool, folder: str | None,
                  score_roots: tuple[Path, ...]) -> str | None:
    """JobInputError for a submission that cannot run; the resolved folder for a score job."""
    if kind not in KINDS:
        raise JobInputError(f"unknown job kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "explain":
        if uploads != 1 or has_embeddings or folder:
            raise JobInputError("an explain job takes exactly one uploaded image (form field `file`)")
        explain_options(options)
        return None
    if kind == "atlas":
        if (uploads > 0) == has_embeddings or folder:
            raise JobInputError("an atlas job takes uploaded images (form fields `files`) or one embeddings file "
                                "(form field `embeddings`), not both")
        unknown = set(options) - {"grid", "tile", "perplexity", "seed", "color_by"}
        if unknown:
            raise JobInputError(f"unknown atlas options: {', '.join(sorted(unknown))}")
        return None
    if uploads or has_embeddings:
        raise JobInputError("a score job reads a folder on the server (form field `folder`), not uploads")
    if not score_roots:
        raise JobInputError("score jobs are off: the server was started without --score-root")
    if not folder:
        raise JobInputError("a score job needs `folder`: a folder under one of the server's --score-root folders")
    unknown = set(options) - {"recursive", "mode"}
    if unknown:
        raise JobInputError(f"unknown score options: {', '.join(sorted(unknown))}")
    from jaxnsfw.options import Mode

    try:
        Mode.parse(options.get("mode", "reference"))
    except ValueError as err:
        raise JobInputError(str(err)) from None
    resolved = Path(folder).resolve()
    if not any(resolved == root or root in resolved.parents for root in score_roots):
        raise JobInputError(f"{folder} is not under a folder this server may read (its --score-root folders)")
    if not resolved.is_dir():
        raise JobInputError(f"{folder} is not a folder on the server")
    return str(resolved)


def explain_options(options: dict):
    from jaxnsfw.explain.command import ExplainOptions

    names = {f.name for f in dataclasses.fields(ExplainOptions)}
    unknown = set(options) - names
    if unknown:
        raise JobInputError(f"unknown explain options: {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(names))})")
    try:
        return ExplainOptions(**options)
    except TypeError as err:
        raise JobInputError(str(err)) from None


def run_explain(job: Job, input_dir: Path, out: Path, context: JobContext, progress: Progress) -> list[str]:
    from jaxnsfw.constants import CLASS_INDEX
    from jaxnsfw.explain.command import UsageError, explain_image, write_explanation
    from jaxnsfw.explain.scoring import reference_input, source_rgb
    from jaxnsfw.preprocess import ImageError

    options = explain_options(job.options)
    name = job.inputs[0]
    progress(0.05, "decoding")
    try:
        rgb = source_rgb(str(input_dir / name))
    except ImageError as err:
        raise JobInputError(str(err).replace(str(input_dir) + "/", "")) from None
    classifier = context.classifier
    with classifier.numerics():
        score = float(classifier.forward(reference_input(rgb)[None]).probs[0, CLASS_INDEX["nsfw"]])
    progress(0.1, f"explaining ({options.method})")
    try:
        explanation = explain_image(rgb, classifier, options)
    except (UsageError, ValueError) as err:
        raise JobInputError(str(err)) from None
    progress(0.9, "drawing")
    stem = f"{Path(name).stem}.{options.method}"
    title = f"{name}: {options.method} ({options.describe_target()}), NSFW score {score:.4g}"
    paths = write_explanation(out, stem, rgb, explanation, title)
    summary = {"name": name, "method": options.method, "target": options.describe_target(), "score": score,
               "files": {kind: Path(path).name for kind, path in paths.items()}}
    (out / "explanation.json").write_text(json.dumps(summary, indent=1))
    return [*(Path(path).name for path in paths.values()), "explanation.json"]


def run_atlas(job: Job, input_dir: Path, out: Path, context: JobContext, progress: Progress) -> list[str]:
    import importlib

    try:  # built beside this feature; absent from installations without it
        atlas = importlib.import_module("jaxnsfw.atlas")
    except ImportError as err:
        raise JobInputError(f"atlas jobs need jaxnsfw.atlas, which this installation lacks ({err})") from None
    inputs = [input_dir / name for name in job.inputs]
    embeddings = inputs[0] if job.options.get("_embeddings") else None
    options = {k: v for k, v in job.options.items() if not k.startswith("_")}
    try:
        files = atlas.run_job(None if embeddings else inputs, embeddings, out, options, progress)
    except atlas.AtlasInputError as err:
        raise JobInputError(str(err)) from None
    return [str(name) for name in files]


def run_score(job: Job, input_dir: Path, out: Path, context: JobContext, progress: Progress) -> list[str]:
    from jaxnsfw.bulk.pipeline import FileScorer
    from jaxnsfw.bulk.records import RecordWriter
    from jaxnsfw.bulk.walk import walk_inputs
    from jaxnsfw.options import ScoringOptions

    folder = job.inputs[0]
    recursive = bool(job.options.get("recursive", False))
    progress(0.0, "listing")
    total = sum(1 for _ in walk_inputs([folder], recursive))
    options = ScoringOptions(mode=job.options.get("mode", "reference"), max_pixels=context.max_pixels)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"inputs": 0, "errors": 0}
    # One decoding worker of its own: the service's pool stays with the requests.
    with FileScorer(context.classifier, workers=1, options=options) as scorer:
        writer = RecordWriter(out / "records.jsonl")
        try:
            for record in scorer.score([folder], recursive, on_warning=lambda path, message: None):
                writer.write(record)
                counts["inputs"] += 1
                counts["errors"] += record.error is not None
                progress(counts["inputs"] / max(total, 1), f"scored {counts['inputs']} of {total}")
        finally:
            writer.close()
    (out / "summary.json").write_text(json.dumps({"folder": folder, "recursive": recursive, **counts}))
    return ["records.jsonl", "summary.json"]


RUNNERS = {"explain": run_explain, "atlas": run_atlas, "score": run_score}

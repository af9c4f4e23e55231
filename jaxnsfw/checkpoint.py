"""The shipped checkpoint: Flax variables in safetensors (no code execution on load) + sha256.

Layout: one tensor per variable, keyed by its path ("params/conv_1/kernel"); the file's metadata
holds the ResNetConfig as JSON and where the weights came from. A sidecar `<file>.sha256` in
sha256sum format pins the exact bytes, and loading refuses a file that does not match it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
from flax import traverse_util
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors_bytes
from safetensors.numpy import save as save_safetensors_bytes

from jaxnsfw.config import ResNetConfig

FORMAT = "jaxnsfw-flax-variables/1"
DEFAULT_CHECKPOINT = "open_nsfw.safetensors"
METADATA_KEY = "jaxnsfw"


class CheckpointError(Exception):
    """A weights file is missing, damaged or does not match its recorded checksum."""


def default_checkpoint_path() -> Path:
    """The checkpoint installed with the package (repo folder weights/, package jaxnsfw.weights)."""
    try:
        return Path(str(resources.files("jaxnsfw.weights").joinpath(DEFAULT_CHECKPOINT)))
    except ModuleNotFoundError:  # running from a source checkout that is not installed
        return Path(__file__).resolve().parent.parent / "weights" / DEFAULT_CHECKPOINT


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksum_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}.sha256")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def serialize(variables: dict, config: ResNetConfig, provenance: dict[str, str]) -> bytes:
    """Checkpoint bytes; deterministic for the same variables, config and provenance."""
    flat = traverse_util.flatten_dict(variables, sep="/")
    tensors = {key: np.ascontiguousarray(np.asarray(value, dtype=np.float32)) for key, value in sorted(flat.items())}
    # One metadata entry: safetensors writes several in hash-map order, which would make the
    # bytes (and the recorded sha256) differ from one conversion to the next.
    header = {"format": FORMAT, "config": config.to_json(), **provenance}
    return save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(header, sort_keys=True)})


def write_checkpoint(path: str | os.PathLike, variables: dict, config: ResNetConfig,
                     provenance: dict[str, str]) -> str:
    """Writes the checkpoint and its .sha256 sidecar, each atomically; returns the sha256."""
    path = Path(path)
    data = serialize(variables, config, provenance)
    digest = sha256_hex(data)
    _atomic_write(path, data)
    _atomic_write(checksum_path(path), f"{digest}  {path.name}\n".encode())
    return digest


def recorded_sha256(path: str | os.PathLike) -> str:
    sidecar = checksum_path(path)
    try:
        return sidecar.read_text().split()[0]
    except (OSError, IndexError) as err:
        raise CheckpointError(f"{sidecar}: checksum file missing or empty ({err})") from err


def read_checkpoint(path: str | os.PathLike | None = None, verify_checksum: bool = True
                    ) -> tuple[dict, ResNetConfig, dict[str, str]]:
    """(variables, config, metadata) from a checkpoint; fails clearly on any damage."""
    path = Path(path) if path is not None else default_checkpoint_path()
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read weights: {err}") from err
    if verify_checksum:
        expected, actual = recorded_sha256(path), sha256_hex(data)
        if expected != actual:
            raise CheckpointError(f"{path}: sha256 {actual} does not match the recorded {expected}; "
                                  "the file is damaged or was replaced")
    try:
        tensors = load_safetensors_bytes(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint: {err}") from err
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    config = ResNetConfig.from_json(metadata["config"])
    variables = traverse_util.unflatten_dict({tuple(key.split("/")): value for key, value in tensors.items()})
    return variables, config, metadata


def _metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's __metadata__ (the numpy loader returns tensors only)."""
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_size])
    return json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "{}"))

"""Bad model files are refused, loudly and without leaving anything behind.

Every bad prototxt/caffemodel pair below must make convert_net raise ConversionError with a
message that names the problem, and `python -m convert` must exit 1 with an `error:` line and
write nothing (no checkpoint, no sidecar, no temporary file) into the output folder. A
checkpoint that does not match its .sha256 or a fresh conversion must fail `--verify`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from flax import traverse_util

from convert import caffe_pb2
from convert.convert import convert_net, provenance
from convert.errors import ConversionError
from jaxnsfw import checkpoint
from convert.__main__ import main as convert_main
from tests.convert.synthetic_caffe import (blob_proto, caffemodel_message, small_config, write_caffemodel,
                                          write_net_files, write_prototxt)

REPO = Path(__file__).resolve().parents[2]
REAL_PROTOTXT = REPO / "weights" / "deploy.prototxt"
REAL_CAFFEMODEL = REPO / "weights" / "resnet_50_1by2_nsfw.caffemodel"


def run_convert_cli(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def start_convert_cli(*args: str | os.PathLike) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "convert", *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------------------------
# The bad pairs. Each builder writes its files into a folder and returns
# (prototxt, caffemodel, fragments the error message must contain).
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BadPair:
    prototxt: Path
    caffemodel: Path
    expected: tuple[str, ...]  # all must appear in the error message


def _good(directory: Path, **config):
    return write_net_files(directory, small_config(**config), seed=3)


def _rewrite_caffemodel(files, path: Path, blobs=None, extra_layers=(), drop=()) -> Path:
    model = caffemodel_message(files.net, blobs if blobs is not None else files.blobs, extra_layers=extra_layers)
    kept = [layer for layer in model.layer if layer.name not in drop]
    del model.layer[:]
    model.layer.extend(kept)
    return write_caffemodel(path, model)


def truncated_real_caffemodel(d: Path) -> BadPair:
    cut = d / "truncated.caffemodel"
    data = REAL_CAFFEMODEL.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    return BadPair(REAL_PROTOTXT, cut, ("truncated.caffemodel", "truncated or corrupted"))


def truncated_synthetic_caffemodel(d: Path) -> BadPair:
    files = _good(d)
    data = files.caffemodel.read_bytes()
    files.caffemodel.write_bytes(data[:len(data) * 2 // 3])
    return BadPair(files.prototxt, files.caffemodel, ("net.caffemodel", "truncated or corrupted"))


def corrupted_caffemodel(d: Path) -> BadPair:
    """Bytes overwritten where a layer entry starts (a corrupted tag); corruption inside float
    data cannot be told from real weights, corruption of the message structure must be caught."""
    files = _good(d)
    data = files.caffemodel.read_bytes()
    model = caffe_pb2.NetParameter()
    model.ParseFromString(data)
    start = len(caffe_pb2.NetParameter(name=model.name, layer=model.layer[:3]).SerializeToString())
    files.caffemodel.write_bytes(data[:start] + b"\xff" * 12 + data[start + 12:])
    return BadPair(files.prototxt, files.caffemodel, ("net.caffemodel", "truncated or corrupted"))


def empty_caffemodel(d: Path) -> BadPair:
    files = _good(d)
    files.caffemodel.write_bytes(b"")
    return BadPair(files.prototxt, files.caffemodel, ("net.caffemodel", "no layers"))


def prototxt_given_as_caffemodel(d: Path) -> BadPair:
    files = _good(d)
    return BadPair(files.prototxt, files.prototxt, ("net.prototxt", "truncated or corrupted"))


def png_given_as_caffemodel(d: Path) -> BadPair:
    files = _good(d)
    image = d / "image.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return BadPair(files.prototxt, image, ("image.png", "truncated or corrupted"))


def protobuf_that_is_no_net(d: Path) -> BadPair:
    """Valid protobuf (a lone BlobProto) that parses as a NetParameter with no layers."""
    files = _good(d)
    blob = d / "blob.caffemodel"
    blob.write_bytes(blob_proto(np.ones((4, 3), np.float32)).SerializeToString())
    return BadPair(files.prototxt, blob, ("blob.caffemodel", "no layers"))


def caffemodel_given_as_prototxt(d: Path) -> BadPair:
    files = _good(d)
    return BadPair(files.caffemodel, files.caffemodel, ("net.caffemodel", "cannot read prototxt"))


def missing_caffemodel(d: Path) -> BadPair:
    files = _good(d)
    return BadPair(files.prototxt, d / "absent.caffemodel", ("absent.caffemodel", "cannot read caffemodel"))


def unsupported_layer_type(d: Path) -> BadPair:
    files = _good(d)
    net = caffe_pb2.NetParameter()
    net.CopyFrom(files.net)
    index = [layer.name for layer in net.layer].index("pool1") + 1
    lrn = caffe_pb2.LayerParameter(name="norm1", type="LRN", bottom=["pool1"], top=["pool1"])
    layers = list(net.layer)
    layers.insert(index, lrn)
    del net.layer[:]
    net.layer.extend(layers)
    write_prototxt(files.prototxt, net)
    return BadPair(files.prototxt, files.caffemodel, ("net.prototxt", "'norm1'", "'LRN'"))


def conv_weights_of_wrong_kernel_size(d: Path) -> BadPair:
    files = _good(d)
    blobs = dict(files.blobs)
    name = "conv_stage0_block0_branch2b"
    weights = blobs[name][0]
    assert weights.shape == (4, 4, 3, 3)
    blobs[name] = [weights[:, :, :1, :1].copy(), blobs[name][1]]  # 1x1 instead of 3x3
    _rewrite_caffemodel(files, files.caffemodel, blobs)
    return BadPair(files.prototxt, files.caffemodel, (f"'{name}'", "shape does not match"))


def blob_with_too_few_values(d: Path) -> BadPair:
    files = _good(d)
    model = caffemodel_message(files.net, files.blobs)
    for layer in model.layer:
        if layer.name == "scale_1":
            del layer.blobs[1].data[-1]
    write_caffemodel(files.caffemodel, model)
    return BadPair(files.prototxt, files.caffemodel, ("'scale_1' blob 1", "needs 8 values", "holds 7"))


def layer_missing_from_caffemodel(d: Path) -> BadPair:
    files = _good(d)
    _rewrite_caffemodel(files, files.caffemodel, drop=("scale_stage1_block0_branch2a",))
    return BadPair(files.prototxt, files.caffemodel,
                   ("no blobs for prototxt layer 'scale_stage1_block0_branch2a'", "do not belong together"))


def batch_norm_with_two_blobs(d: Path) -> BadPair:
    files = _good(d)
    blobs = dict(files.blobs)
    blobs["bn_1"] = blobs["bn_1"][:2]  # no moving-average factor
    _rewrite_caffemodel(files, files.caffemodel, blobs)
    return BadPair(files.prototxt, files.caffemodel, ("'bn_1'", "BatchNorm", "has 2 blobs", "needs 3"))


def layer_type_differs(d: Path) -> BadPair:
    files = _good(d)
    model = caffemodel_message(files.net, files.blobs)
    for layer in model.layer:
        if layer.name == "bn_1":
            layer.type = "Scale"
    write_caffemodel(files.caffemodel, model)
    return BadPair(files.prototxt, files.caffemodel, ("'bn_1'", "Scale in the caffemodel", "BatchNorm in the prototxt"))


def caffemodel_of_another_layout(d: Path) -> BadPair:
    """Net A (stages 1+2 blocks) with the caffemodel of net B (stages 2+1 blocks)."""
    a = write_net_files(d, small_config(stage_sizes=(1, 2)), seed=3, name="a")
    b = write_net_files(d, small_config(stage_sizes=(2, 1)), seed=4, name="b")
    return BadPair(a.prototxt, b.caffemodel, ("b.caffemodel", "do not belong together"))


def caffemodel_of_another_input_size(d: Path) -> BadPair:
    """Same layers, but B was made for a 33x33 input (final map 4x4, head pool 4: 1x1 output) and
    A has a 3x3 head output: only fc_nsfw's weights differ in shape."""
    a = write_net_files(d, small_config(), seed=3, name="a")
    b = write_net_files(d, small_config(input_size=33, head_pool_kernel=4), seed=4, name="b")
    return BadPair(a.prototxt, b.caffemodel, ("b.caffemodel", "'fc_nsfw'", "shape does not match"))


def caffemodel_with_extra_layer(d: Path) -> BadPair:
    files = _good(d)
    extra = caffe_pb2.LayerParameter(name="conv_extra", type="Convolution", bottom=["pool1"], top=["conv_extra"])
    extra.blobs.append(blob_proto(np.ones((2, 8, 1, 1), np.float32)))
    extra.blobs.append(blob_proto(np.zeros((2,), np.float32)))
    _rewrite_caffemodel(files, files.caffemodel, extra_layers=(extra,))
    return BadPair(files.prototxt, files.caffemodel,
                   ("'conv_extra'", "prototxt does not have", "do not belong together"))


BAD_PAIRS: dict[str, Callable[[Path], BadPair]] = {f.__name__: f for f in (
    truncated_real_caffemodel, truncated_synthetic_caffemodel, corrupted_caffemodel, empty_caffemodel,
    prototxt_given_as_caffemodel, png_given_as_caffemodel, protobuf_that_is_no_net, caffemodel_given_as_prototxt,
    missing_caffemodel, unsupported_layer_type, conv_weights_of_wrong_kernel_size, blob_with_too_few_values,
    layer_missing_from_caffemodel, batch_norm_with_two_blobs, layer_type_differs, caffemodel_of_another_layout,
    caffemodel_of_another_input_size, caffemodel_with_extra_layer,
)}
# Every kind of problem also goes through a real `python -m convert` process; each process pays
# JAX's import, so the remaining variants run the same main() in this process.
SUBPROCESS_PAIRS = ("truncated_real_caffemodel", "corrupted_caffemodel", "empty_caffemodel", "png_given_as_caffemodel",
                    "unsupported_layer_type", "conv_weights_of_wrong_kernel_size", "layer_missing_from_caffemodel",
                    "batch_norm_with_two_blobs", "caffemodel_of_another_layout", "caffemodel_with_extra_layer")


@pytest.fixture(scope="module")
def bad_pairs(tmp_path_factory) -> dict[str, BadPair]:
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in BAD_PAIRS.items()}


@dataclasses.dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    out_dir_after: list[str]


@pytest.fixture(scope="module")
def subprocess_results(bad_pairs, tmp_path_factory) -> dict[str, CliResult]:
    """`python -m convert` on the SUBPROCESS_PAIRS, run side by side."""
    running = {}
    for name in SUBPROCESS_PAIRS:
        pair, out_dir = bad_pairs[name], tmp_path_factory.mktemp(f"out_{name}")
        running[name] = (out_dir, start_convert_cli("--prototxt", pair.prototxt, "--caffemodel", pair.caffemodel,
                                                    "--out", out_dir / "model.safetensors"))
    results = {}
    for name, (out_dir, process) in running.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = CliResult(process.returncode, stdout, stderr, sorted(os.listdir(out_dir)))
    return results


def assert_refused(result: CliResult, pair: BadPair) -> None:
    assert result.returncode == 1, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for fragment in pair.expected:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.out_dir_after == []  # no checkpoint, no .sha256, no temporary file


@pytest.mark.parametrize("name", list(BAD_PAIRS))
def test_convert_net_names_the_problem(name, bad_pairs):
    pair = bad_pairs[name]
    with pytest.raises(ConversionError) as raised:
        convert_net(pair.prototxt, pair.caffemodel)
    message = str(raised.value)
    for fragment in pair.expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("name", list(BAD_PAIRS))
def test_cli_main_exits_1_and_writes_nothing(name, bad_pairs, tmp_path, capsys):
    pair = bad_pairs[name]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = convert_main(["--prototxt", str(pair.prototxt), "--caffemodel", str(pair.caffemodel),
                         "--out", str(out_dir / "model.safetensors")])
    captured = capsys.readouterr()
    assert_refused(CliResult(code, captured.out, captured.err, sorted(os.listdir(out_dir))), pair)


@pytest.mark.parametrize("name", SUBPROCESS_PAIRS)
def test_python_m_convert_exits_1_and_writes_nothing(name, bad_pairs, subprocess_results):
    assert_refused(subprocess_results[name], bad_pairs[name])


# ---------------------------------------------------------------------------------------------
# Checkpoints: the .sha256 sidecar and --verify
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def written_once(tmp_path_factory):
    """A synthetic net converted by `python -m convert` into out/model.safetensors (+ .sha256)."""
    root = tmp_path_factory.mktemp("written")
    files = _good(root / "src")
    out = root / "out" / "model.safetensors"
    out.parent.mkdir()
    result = run_convert_cli("--prototxt", files.prototxt, "--caffemodel", files.caffemodel, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}")
    assert sorted(os.listdir(out.parent)) == ["model.safetensors", "model.safetensors.sha256"]
    return files, out


@pytest.fixture
def written(written_once, tmp_path):
    """A private copy of the written checkpoint, for tests that change it."""
    files, out = written_once
    copy = tmp_path / "out"
    shutil.copytree(out.parent, copy)
    return files, copy / out.name


def verify(files, out) -> subprocess.CompletedProcess:
    return run_convert_cli("--prototxt", files.prototxt, "--caffemodel", files.caffemodel, "--out", out, "--verify")


def test_failed_conversion_leaves_an_existing_checkpoint_alone(written, bad_pairs, capsys):
    _, out = written
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    bad = bad_pairs["batch_norm_with_two_blobs"]
    assert convert_main(["--prototxt", str(bad.prototxt), "--caffemodel", str(bad.caffemodel), "--out", str(out)]) == 1
    assert "error: " in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


def test_verify_accepts_a_fresh_checkpoint_and_it_loads_as_converted(written):
    files, out = written
    result = verify(files, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {out} matches a fresh conversion")
    variables, config, metadata = checkpoint.read_checkpoint(out)
    fresh, fresh_config = convert_net(files.prototxt, files.caffemodel)
    assert config == fresh_config
    sources = provenance(files.prototxt, files.caffemodel)
    assert metadata["source_caffemodel_sha256"] == sources["source_caffemodel_sha256"]
    flat, fresh_flat = traverse_util.flatten_dict(variables), traverse_util.flatten_dict(fresh)
    assert flat.keys() == fresh_flat.keys()
    for key in flat:
        np.testing.assert_array_equal(flat[key], fresh_flat[key], err_msg="/".join(key))


def test_checkpoint_not_matching_its_sha256_is_refused(written):
    files, out = written
    data = bytearray(out.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor value
    out.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="does not match the recorded"):
        checkpoint.read_checkpoint(out)
    result = verify(files, out)
    assert result.returncode == 1
    assert "does not match the recorded" in result.stderr
    assert any(line.startswith("error: ") for line in result.stderr.splitlines())


def test_sidecar_not_matching_the_checkpoint_is_refused(written, capsys):
    files, out = written
    checkpoint.checksum_path(out).write_text("0" * 64 + "  model.safetensors\n")
    with pytest.raises(checkpoint.CheckpointError, match="does not match the recorded 0000"):
        checkpoint.read_checkpoint(out)
    args = ["--prototxt", str(files.prototxt), "--caffemodel", str(files.caffemodel), "--out", str(out), "--verify"]
    assert convert_main(args) == 1
    assert "does not match the recorded" in capsys.readouterr().err


def test_verify_rejects_a_checkpoint_with_one_value_changed(written):
    """A checkpoint rewritten (with a matching .sha256) after changing one float by one ulp."""
    files, out = written
    variables, config, metadata = checkpoint.read_checkpoint(out)
    kernel = np.array(variables["params"]["conv_1"]["kernel"])
    kernel.flat[5] = np.nextafter(kernel.flat[5], np.float32(np.inf))
    variables["params"]["conv_1"]["kernel"] = kernel
    checkpoint.write_checkpoint(out, variables, config, {k: v for k, v in metadata.items()
                                                         if k not in ("format", "config")})
    checkpoint.read_checkpoint(out)  # its checksum is fine ...
    result = verify(files, out)  # ... but it is not what the Caffe files convert to
    assert result.returncode == 1
    assert "mismatch: params/conv_1/kernel: values differ" in result.stderr
    assert "(1 differences)" in result.stderr


def test_verify_rejects_a_checkpoint_of_other_sources(written, tmp_path, capsys):
    files, out = written
    other = write_net_files(tmp_path / "other", files.config, seed=99)
    args = ["--prototxt", str(other.prototxt), "--caffemodel", str(other.caffemodel), "--out", str(out), "--verify"]
    assert convert_main(args) == 1
    err = capsys.readouterr().err
    assert "source_caffemodel_sha256 differs" in err
    assert "batch_stats/bn_1/mean: values differ" in err


def test_verify_of_a_missing_checkpoint_fails(tmp_path, capsys):
    files = _good(tmp_path / "src")
    args = ["--prototxt", str(files.prototxt), "--caffemodel", str(files.caffemodel),
            "--out", str(tmp_path / "absent.safetensors"), "--verify"]
    assert convert_main(args) == 1
    assert "cannot read weights" in capsys.readouterr().err

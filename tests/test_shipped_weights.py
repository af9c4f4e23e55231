"""The checkpoint the package ships: reproducible from Yahoo's files, intact, and licensed."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from jaxnsfw import checkpoint
from jaxnsfw.config import OPEN_NSFW

from conftest import REPO

WEIGHTS = REPO / "weights"
YAHOO_SHA256 = {
    "deploy.prototxt": "a359e2d7b23abca938bb52580acf578c1b78870263fea814afa294fb4f315a4b",
    "resnet_50_1by2_nsfw.caffemodel": "74b7c0374425c2b324f73b134f8a7254eab9bbddc9e452a22d934b8c17015ad2",
}


def test_original_caffe_files_are_yahoos_release():
    for name, digest in YAHOO_SHA256.items():
        assert hashlib.sha256((WEIGHTS / name).read_bytes()).hexdigest() == digest


def test_shipped_checkpoint_loads_with_checksum_config_and_provenance():
    variables, config, metadata = checkpoint.read_checkpoint(checkpoint.default_checkpoint_path())
    assert config == OPEN_NSFW
    assert metadata["source_caffemodel_sha256"] == YAHOO_SHA256["resnet_50_1by2_nsfw.caffemodel"]
    assert metadata["source_prototxt_sha256"] == YAHOO_SHA256["deploy.prototxt"]
    assert "Yahoo" in metadata["license"]
    assert variables["params"]["conv_1"]["kernel"].shape == (7, 7, 3, 64)
    assert variables["batch_stats"]["bn_1"]["mean"].shape == (64,)
    assert variables["params"]["fc_nsfw"]["kernel"].shape == (1024, 2)


def test_yahoos_bsd_licence_ships_beside_the_weights():
    licence = (WEIGHTS / "LICENSE.md").read_text()
    assert "Copyright 2016, Yahoo Inc." in licence and "Redistribution" in licence


def test_verify_confirms_the_shipped_checkpoint_is_a_fresh_conversion():
    result = subprocess.run([sys.executable, "-m", "convert", "--prototxt", str(WEIGHTS / "deploy.prototxt"),
                             "--caffemodel", str(WEIGHTS / "resnet_50_1by2_nsfw.caffemodel"),
                             "--out", str(WEIGHTS / "open_nsfw.safetensors"), "--verify"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def test_conversion_is_byte_for_byte_reproducible(tmp_path):
    from convert.convert import convert_net, provenance

    prototxt, caffemodel = WEIGHTS / "deploy.prototxt", WEIGHTS / "resnet_50_1by2_nsfw.caffemodel"
    variables, config = convert_net(prototxt, caffemodel)
    digest = checkpoint.write_checkpoint(tmp_path / "open_nsfw.safetensors", variables, config,
                                         provenance(prototxt, caffemodel))
    assert digest == checkpoint.recorded_sha256(WEIGHTS / "open_nsfw.safetensors")
    assert (tmp_path / "open_nsfw.safetensors").read_bytes() == (WEIGHTS / "open_nsfw.safetensors").read_bytes()

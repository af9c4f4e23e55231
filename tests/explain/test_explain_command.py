"""`jaxnsfw explain` on the shipped model: what it writes, what it prints, how it refuses bad
options; and the pictures it draws. The command is registered on a fresh argparse parser here,
as jaxnsfw/cli.py's build_parser registers it."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from jaxnsfw.cli import sample_image_path
from jaxnsfw.explain import render
from jaxnsfw.explain.command import METHODS, add_explain_command

CHELSEA_SHAPE = (300, 451)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jaxnsfw")
    add_explain_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["explain", *argv])


def run(classifier, capsys, *argv: str) -> tuple[int, dict | None, str]:
    args = parse(*argv)
    status = args.run(args, classifier=classifier)
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out.strip() else None), err


def test_the_command_offers_every_method_with_documented_defaults():
    assert METHODS == ("occlusion", "windows", "saliency", "guided", "deconvnet", "gradcam")
    args = parse("photo.jpg", "--out", "maps")
    assert (args.image, args.out, args.method, args.box, args.stride, args.fill, args.target, args.batch_size) == \
        ("photo.jpg", "maps", "gradcam", 64, None, "grey", "nsfw", 64)
    with pytest.raises(SystemExit):
        parse("photo.jpg", "--out", "maps", "--method", "lime")
    with pytest.raises(SystemExit):
        parse("photo.jpg", "--out", "maps", "--box", "0")


def test_occlusion_writes_the_map_at_the_image_resolution_and_the_pictures(classifier, capsys, tmp_path):
    chelsea = str(sample_image_path())
    status, record, _ = run(classifier, capsys, chelsea, "--out", str(tmp_path), "--method", "occlusion",
                            "--box", "150", "--stride", "150", "--fill", "mean")
    assert status == 0
    assert record["score"] == pytest.approx(classifier.score(chelsea), abs=0)
    assert record["target"] == "nsfw probability"
    values = np.load(record["map"])
    assert values.shape == CHELSEA_SHAPE and values.dtype == np.float32 and np.isfinite(values).all()
    assert np.abs(values).max() > 0  # some box changes the score
    with Image.open(record["overlay"]) as overlay:
        assert overlay.size == (451, 300)
    with Image.open(record["panel"]) as panel:
        assert panel.width > panel.height
    assert record["map"].endswith("chelsea.occlusion.npy")


def test_gradcam_and_a_deconvnet_channel_projection_of_the_shipped_model(classifier, capsys, tmp_path):
    chelsea = str(sample_image_path())
    status, record, _ = run(classifier, capsys, chelsea, "--out", str(tmp_path), "--method", "gradcam",
                            "--target", "sfw")
    assert status == 0 and record["target"] == "sfw logit"
    cam = np.load(record["map"])
    assert cam.shape == CHELSEA_SHAPE and cam.min() >= 0 and cam.max() > 0
    status, record, _ = run(classifier, capsys, chelsea, "--out", str(tmp_path), "--method", "deconvnet",
                            "--target", "channel", "--layer", "relu_stage1_block3", "--channel", "5")
    assert status == 0 and record["target"] == "relu_stage1_block3 channel 5"
    projection = np.load(record["map"])
    assert projection.shape == CHELSEA_SHAPE and projection.max() > 0


@pytest.mark.parametrize("options, message", [
    (["--method", "guided", "--target", "channel"], "needs --layer"),
    (["--method", "occlusion", "--target", "channel"], "class probability"),
    (["--method", "gradcam", "--target", "channel", "--layer", "pool1", "--channel", "0"], "Grad-CAM"),
    (["--method", "saliency", "--target", "channel", "--layer", "relu_9", "--channel", "0"], "no layer named"),
])
def test_options_that_do_not_go_together_are_usage_errors(classifier, capsys, tmp_path, options, message):
    status, record, err = run(classifier, capsys, str(sample_image_path()), "--out", str(tmp_path), *options)
    assert status == 2 and record is None and message in err
    assert not list(tmp_path.iterdir())


def test_an_unreadable_image_is_reported_not_raised(classifier, capsys, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    status, record, _ = run(classifier, capsys, str(bad), "--out", str(tmp_path / "out"))
    assert status == 1 and record["path"] == str(bad) and "bad.jpg" in record["error"]


def test_overlays_colour_the_map_and_leave_unmeasured_pixels_alone():
    rgb = np.full((4, 6, 3), 100, np.uint8)
    values = np.zeros((4, 6), np.float32)
    values[1, 2], values[2, 3], values[0, 0] = 1.0, -0.5, np.nan
    blended = render.overlay(rgb, values)
    assert (blended[3] == 100).all() and (blended[0, 0] == 100).all()  # zero and NaN: the photo itself
    red, green, blue = blended[1, 2].astype(int)
    assert red > green + 40 and red > blue + 40  # strongest positive: RdBu_r's dark red
    red, green, blue = blended[2, 3].astype(int)
    assert blue > red + 30  # negative: blue
    assert render.MapScale.of(values).cmap == render.DIVERGING_CMAP
    assert render.MapScale.of(np.abs(values)).cmap == render.SEQUENTIAL_CMAP


def test_a_panel_shows_image_map_overlay_and_optionally_the_signal():
    rgb = np.zeros((30, 50, 3), np.uint8)
    values = np.random.default_rng(0).random((30, 50)).astype(np.float32)
    three = render.panel(rgb, values, "title")
    four = render.panel(rgb, values, "title", signal_rgb=rgb)
    assert three.shape[1] == four.shape[1] == 1200 and three.shape[2] == 3
    assert four.shape[0] < three.shape[0]  # same width, four narrower columns


def test_building_the_parser_imports_no_jax_and_offers_every_gradient_rule():
    import subprocess
    import sys

    probe = ("import sys, argparse; from jaxnsfw.explain.command import add_explain_command; "
             "add_explain_command(argparse.ArgumentParser().add_subparsers()); print('jax' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    from jaxnsfw.explain import RELU_RULES, command
    assert command.GRADIENT_METHODS == tuple(RELU_RULES)  # each gradient method has a ReLU rule


def test_without_matplotlib_it_says_so_first_and_still_writes_the_map(classifier, capsys, tmp_path, monkeypatch):
    from jaxnsfw.explain import command

    monkeypatch.setattr(command, "matplotlib_available", lambda: False)
    status, record, err = run(classifier, capsys, str(sample_image_path()), "--out", str(tmp_path),
                              "--method", "saliency")
    assert status == 0 and 'pip install "jaxnsfw[explain]"' in err
    assert set(record) == {"path", "method", "target", "score", "map"}
    assert np.load(record["map"]).shape == CHELSEA_SHAPE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea.saliency.npy"]


def test_a_fifo_is_reported_without_waiting_for_a_writer(classifier, capsys, tmp_path):
    import os

    os.mkfifo(tmp_path / "x.jpg")
    status, record, _ = run(classifier, capsys, str(tmp_path / "x.jpg"), "--out", str(tmp_path / "maps"))
    assert status == 1 and "FIFO" in record["error"]


@pytest.mark.parametrize("make_out", [lambda tmp: tmp / "a_file", lambda tmp: tmp / "a_file" / "below"])
def test_an_output_that_cannot_be_a_folder_is_refused_before_any_work(classifier, capsys, tmp_path, make_out):
    (tmp_path / "a_file").write_text("")
    out = make_out(tmp_path)
    status, record, err = run(classifier, capsys, str(sample_image_path()), "--out", str(out))
    assert status == 2 and record is None and f"--out {out}" in err

"""Which pictures of a file get scored: the reference view is classify_nsfw.py's; robust views add
what a viewer is shown (EXIF orientation, alpha over white and black, ICC, 16-bit) for every frame."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from jaxnsfw import preprocess, views
from jaxnsfw.options import ScoringOptions

from conftest import DATA

PHOTO = DATA / "images" / "skimage__color.png"  # 371x370 RGB


def _names(image) -> list[str]:
    return [view.name for view in views.robust_views(image)]


def _png(image: Image.Image, **params) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_the_reference_view_is_the_first_frame_converted_to_rgb_as_stored():
    image = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    (view,) = views.views(image, "reference")
    assert (view.frame, view.rendering, view.image.mode) == (0, "stored", "RGB")
    assert view.image.getpixel((0, 0)) == (10, 20, 30)  # alpha dropped: the hidden colour shows


def test_an_opaque_plain_rgb_image_has_only_the_stored_view():
    with Image.open(DATA / "images" / "astronaut_q10.jpg") as image:  # no EXIF, no ICC profile
        assert _names(image) == ["frame 0 stored"]


def test_transparency_is_shown_over_white_and_over_black_besides_the_raw_pixels():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:4, :, 3] = 255  # top half opaque grey, bottom half fully transparent
    robust = {view.rendering: np.asarray(view.image) for view in views.robust_views(Image.fromarray(rgba, "RGBA"))}
    assert set(robust) == {"stored", "shown over white", "shown over black"}
    assert (robust["stored"] == 200).all()
    assert (robust["shown over white"][:4] == 200).all() and (robust["shown over white"][4:] == 255).all()
    assert (robust["shown over black"][:4] == 200).all() and (robust["shown over black"][4:] == 0).all()


def test_palette_transparency_counts_as_transparency():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 1
    assert views.has_transparency(image)
    assert "frame 0 shown over black" in _names(image)


def test_exif_orientation_is_applied_only_to_the_shown_view():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    Image.new("RGB", (60, 20), (0, 0, 255)).save(buffer, format="JPEG", exif=exif)
    with Image.open(buffer) as image:
        robust = {view.rendering: view.image for view in views.robust_views(image)}
    assert robust["stored"].size == (60, 20)
    assert robust["shown"].size == (20, 60)


def test_sixteen_bit_greyscale_is_scaled_where_pillow_would_clip_to_white():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    image = _png(Image.fromarray(ramp))
    assert image.mode.startswith("I")
    robust = {view.rendering: np.asarray(view.image)[..., 0] for view in views.robust_views(image)}
    assert (robust["stored"][-1] == 255).all() and (robust["stored"] == 255).mean() > 0.99
    np.testing.assert_array_equal(robust["shown"], np.rint(ramp / 257.0).astype(np.uint8))


def test_an_embedded_icc_profile_is_converted_to_srgb_and_a_broken_one_is_ignored():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"))[:64, :64]
    converted = views.to_srgb(Image.fromarray(pixels), srgb)
    # sRGB -> sRGB through LittleCMS: the identity up to its 8-bit rounding.
    assert np.abs(np.asarray(converted).astype(int) - pixels).max() <= 1
    unchanged = views.to_srgb(Image.fromarray(pixels), b"not an icc profile")
    np.testing.assert_array_equal(np.asarray(unchanged), pixels)


def test_every_frame_of_an_animation_is_a_view():
    frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(5)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    with Image.open(buffer) as image:
        robust = list(views.robust_views(image))
    assert [view.frame for view in robust if view.rendering == "stored"] == [0, 1, 2, 3, 4]
    assert [view.image.getpixel((0, 0))[0] for view in robust if view.rendering == "stored"] == [0, 40, 80, 120, 160]


def test_long_animations_are_sampled_evenly_including_first_and_last_frame():
    assert views.sampled_frames(5, max_frames=10) == [0, 1, 2, 3, 4]
    sampled = views.sampled_frames(10_000, max_frames=256)
    assert len(sampled) == 256 and sampled[0] == 0 and sampled[-1] == 9_999
    assert max(np.diff(sampled)) <= 40


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="unknown mode"):
        views.views(Image.new("RGB", (2, 2)), "paranoid")


def test_prepare_runs_the_reference_pixels_pipeline_on_each_view():
    rgba = Image.open(PHOTO).convert("RGBA")
    rgba.putalpha(0)
    prepared = preprocess.prepare(rgba, ScoringOptions(mode="robust"))
    assert prepared.renderings == ("stored", "shown over white", "shown over black")
    assert prepared.rgb256.shape == (3, 256, 256, 3) and prepared.rgb256.dtype == np.uint8
    np.testing.assert_array_equal(prepared.rgb256[0], preprocess.reference_rgb256(rgba))
    assert prepared.rgb256[1].min() >= 250 and prepared.rgb256[2].max() <= 5  # white / black pages


def test_the_frame_budget_keeps_large_animations_within_a_fixed_pixel_count():
    from jaxnsfw.constants import MAX_VIEW_PIXELS

    assert views.frame_budget((100, 100)) == 256  # small frames: every frame up to max_frames
    big = views.frame_budget((2000, 2000))
    assert 1 <= big < 256 and big * 3 * 2000 * 2000 <= MAX_VIEW_PIXELS
    assert views.frame_budget((20_000, 20_000)) == 1  # always at least one frame
    assert views.frame_budget((100, 100), max_frames=7) == 7


def _animation(path, frames: int, size=(64, 48)) -> None:
    images = [Image.new("RGB", size, (10 * i, 255 - 10 * i, 0)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=40)


def test_robust_mode_samples_frames_evenly_to_fit_the_pixel_budget(tmp_path):
    path = tmp_path / "anim.png"
    _animation(path, 20)
    budget = 3 * 256 * 256 * 5  # five frames' worth of views
    options = ScoringOptions(mode="robust", max_view_pixels=budget)
    prepared = preprocess.prepare(str(path), options)
    assert sorted(set(prepared.frames)) == views.sampled_frames(20, 5) == [0, 5, 10, 14, 19]
    on_device = preprocess.prepare(str(path), options.with_changes(device_preprocess=True))
    assert on_device.frames == prepared.frames  # the same views whichever side resizes them


def test_views_are_made_one_at_a_time():
    frames = Image.new("RGB", (32, 32))
    made = views.views(frames, "robust")
    assert next(made).rendering == "stored"  # a generator: nothing beyond the first view is held

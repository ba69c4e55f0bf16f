"""Movies: MP4 and GIF written and re-opened, set_data per frame, a saved movie frame."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sdoml_sql.cli import main
from sdoml_sql.exceptions import FetchError
from sdoml_sql.fetch.movies import animate, save, save_frame

MOVIE_SQL = ("SELECT * FROM nearest('aia', '171A', '2010-08-27 00:00', '2010-08-27 03:00', "
             "'12 minutes', '6 minutes')")
MIXED_SQL = ("SELECT year, channel, idx FROM frames WHERE year = 2010 AND channel IN ('193A', 'Bz') "
             "AND idx < 3 ORDER BY channel, idx")


@pytest.fixture(scope="module")
def movie(catalog):
    return animate(catalog.query(MOVIE_SQL), missing="drop", downsample=2, figsize=(4, 4), dpi=80)


def test_mp4_reopens_with_frame_count_and_size(movie, tmp_path):
    import imageio_ffmpeg

    path = save(movie, tmp_path / "m.mp4", fps=5)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = sum(1 for _ in reader)
    assert meta["size"] == (320, 320)
    assert frames == movie.sdoml_frames > 5


def test_gif_reopens_with_frame_count_and_size(movie, tmp_path):
    path = save(movie, tmp_path / "m.gif", fps=5)
    with Image.open(path) as gif:
        assert gif.size == (320, 320) and gif.n_frames == movie.sdoml_frames
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("L"))
        gif.seek(0)
        first = np.asarray(gif.convert("L"))
    assert not np.array_equal(first, last)  # titles and images change


def test_html_and_unknown_format(movie, tmp_path):
    path = save(movie, tmp_path / "m.html")
    text = path.read_text()
    assert text.count("data:image/png;base64") == movie.sdoml_frames
    with pytest.raises(FetchError, match="m.avi"):
        save(movie, tmp_path / "m.avi")


def test_frames_update_the_image_in_place(catalog):
    animation = animate(catalog.query(MIXED_SQL), figsize=(4, 4), dpi=60)
    figure = animation._fig
    axes, colorbar_axes = figure.axes  # the image's axes and its colour bar
    image = axes.images[0]
    titles = []
    for i in range(animation.sdoml_frames):
        animation._draw_frame(i)
        assert figure.axes == [axes, colorbar_axes] and list(axes.images) == [image]
        titles.append(axes.get_title())
    assert image.get_cmap().name == "hmimag"  # last frame is Bz
    norm = image.norm
    assert norm.vmin == -norm.vmax
    assert colorbar_axes.get_ylabel() == "G"  # the colour bar follows the channel
    assert titles[0].startswith("AIA 193A  2010-08-2") and titles[-1].startswith("HMI Bz  2010-08-2")
    assert titles[-1].endswith("UTC")


def test_missing_rows_raise_unless_dropped(catalog):
    with pytest.raises(FetchError, match="no frame"):
        animate(catalog.query(MOVIE_SQL.replace("'6 minutes'", "'5 seconds'")))
    strict = catalog.query(MOVIE_SQL.replace("'6 minutes'", "'3 minutes'"))
    present = int(strict.locators()["idx"].notna().sum())
    assert 0 < present < len(strict)
    assert animate(strict, missing="drop", downsample=8).sdoml_frames == present


def test_fast_frames_equal_a_full_savefig_of_the_figure(catalog, tmp_path):
    """The blitted frame (static background + image pixel map + overlay) is the picture a
    plain full ``savefig`` of the animation's figure shows: AIA and HMI frames, per-frame
    scaling (colour bar redrawn), an odd pixel size, and 64×64 frames upsampled 4× (where
    matplotlib interpolates data, not RGBA)."""
    import io

    for animation in (animate(catalog.query(MIXED_SQL), figsize=(4, 4), dpi=80, scaling="frame"),
                      animate(catalog.query(MOVIE_SQL), missing="drop", figsize=(5, 4), dpi=72),
                      animate(catalog.query(MOVIE_SQL), missing="drop", downsample=8, figsize=(4, 4), dpi=80)):
        movie = animation.sdoml_movie
        for i in sorted({0, 1, animation.sdoml_frames - 1}):
            fast = movie.render(i).copy()
            animation._draw_frame(i)
            buffer = io.BytesIO()
            animation._fig.savefig(buffer, format="png")
            buffer.seek(0)
            with Image.open(buffer) as image:
                slow = np.asarray(image.convert("RGBA"))
            assert fast.shape == slow.shape
            difference = np.abs(fast.astype(int) - slow.astype(int))
            assert difference.max() <= 2 and (difference > 0).mean() < 0.01, (i, difference.max())


def test_html_is_the_jshtml_player_with_every_frame(movie):
    text = movie.to_jshtml()
    assert text.count("data:image/png;base64") == movie.sdoml_frames
    assert "anim-controls" in text and movie.to_jshtml() is text  # cached like Animation.to_jshtml


def test_save_a_movie_frame_as_png(movie, tmp_path):
    path = save_frame(movie, 2, tmp_path / "frame.png")
    with Image.open(path) as image:
        assert image.size == (320, 320)
        assert len(np.unique(np.asarray(image.convert("L")))) > 50


def test_cli_movie_gif(catalog_dir, tmp_path):
    out = tmp_path / "cli.gif"
    result = CliRunner().invoke(main, ["movie", MIXED_SQL, str(out), "--catalog", str(catalog_dir),
                                       "--downsample", "4", "--fps", "4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with Image.open(out) as gif:
        assert gif.n_frames == 6

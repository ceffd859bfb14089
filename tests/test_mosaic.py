"""`genarun export video` and `export mosaic`: a grid of trajectories stepping in time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from click.testing import Result
from PIL import Image


def test_video_and_mosaic_of_an_experiment(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("ftle.yaml")).exit_code == 0  # 3 runs, images at steps 0, 2, 4
    out = workdir / "v.mp4"
    result = cli("export", "video", "latest", "--out", out, "--tile", "32", "--fps", "4")
    assert result.exit_code == 0, result.output
    assert "3 frames of 3 trajectories, 64x64 at 4 fps" in result.output
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(64, 64, 3) for f in reader]
    assert meta["size"] == (64, 64) and meta["fps"] == 4 and len(frames) == 3
    # 2x2 grid of 3 trajectories: the fourth cell stays black, the others hold images.
    assert frames[0][40:, 40:].max() < 20 and frames[0][:32, :32].mean() > 5

    mosaic = workdir / "m.png"
    made = cli("export", "mosaic", "latest", "--out", mosaic, "--tile", "16")
    assert made.exit_code == 0, made.output
    assert Image.open(mosaic).size == (3 * 16, 3 * 16)  # 3 images per run, 3 runs


def test_a_tile_codecs_cannot_take_is_refused(
    tree: Callable[[str], Path], cli: Callable[..., Result], workdir: Path
) -> None:
    assert cli("run", tree("ftle.yaml"), "--set", "seed=1").exit_code == 0
    bad = cli("export", "video", "latest", "--out", workdir / "v.mp4", "--tile", "40")
    assert bad.exit_code == 2 and "multiple of 16" in bad.output
    assert not (workdir / "v.mp4").exists()

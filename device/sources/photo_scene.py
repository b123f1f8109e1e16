"""The demo scene from real photos: a real person walks into a real still background and away again, looping.

The person is NASA's portrait of astronaut Eileen Collins (scikit-image ``astronaut``, public domain), cut out as a
rectangle; the background is scikit-image's ``brick`` wall (no person in it). Both ship inside the scikit-image
wheel (the ``demo`` extra), so the demo needs no download. The result is a :class:`~.synthetic.Scene` the
synthetic source renders frame by frame.

Timeline of one 16 s loop: empty wall 0-1.5 s, the person walks in from the left (1.5-4.5 s), stands at the door
(4.5-7.5 s), walks off to the right (7.5-10.5 s), empty wall 10.5-16 s (long enough for the person event to end).
"""

from __future__ import annotations

import importlib.resources

import numpy as np

from ..errors import CaptureError
from .synthetic import Scene

#: ``(t, cx, cy)`` waypoints of the sprite centre (normalised), see the module docstring.
PATH = ((0.0, -0.6, 0.55), (1.5, -0.35, 0.55), (4.5, 0.45, 0.55), (7.5, 0.5, 0.55), (10.5, 1.35, 0.55),
        (16.0, 1.6, 0.55))
#: When the person is (at least partly) in the frame during one loop, for tests and docs.
PERSON_VISIBLE_S = (1.5, 10.5)
LOOP_S = PATH[-1][0]


def load_skimage_photo(file_name: str) -> np.ndarray:
    """An RGB uint8 photo bundled in the scikit-image wheel (``skimage/data/<file_name>``), no network."""
    try:
        from PIL import Image

        res = importlib.resources.files("skimage.data").joinpath(file_name)
        with importlib.resources.as_file(res) as p, Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except (ImportError, FileNotFoundError) as exc:
        raise CaptureError(f"the photo demo scene needs scikit-image (pip install 'doorkeep[demo]'): {exc}") from exc


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def photo_scene(width: int = 1280, height: int = 720, *, person_height: float = 0.8) -> Scene:
    """The scene at ``width`` x ``height``; the person is ``person_height`` of the frame tall."""
    wall = load_skimage_photo("brick.png")
    # Tile the wall photo to the frame's aspect ratio instead of stretching its bricks.
    reps = (1, max(1, round(width / height)), 1)
    background = _resize(np.tile(wall, reps), width, height)
    person = load_skimage_photo("astronaut.png")[:, 40:400]  # the astronaut, most of the flag cropped off
    sh = int(height * person_height) // 2 * 2
    sw = int(sh * person.shape[1] / person.shape[0]) // 2 * 2
    sprite = np.empty((sh, sw, 4), np.uint8)
    sprite[..., :3] = _resize(person, sw, sh)
    sprite[..., 3] = 255
    return Scene(background=background, sprite=sprite, path=PATH)

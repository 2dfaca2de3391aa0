"""SpRAy's pieces: the eigengap counts well-separated groups of maps, and the off-object numbers
see relevance in a corner or on the border. (The planted shortcut, end to end: test_shortcut.py.)"""

from __future__ import annotations

import numpy as np

from dossier.analyses.spray import normalised, off_object, strategies


def test_the_eigengap_counts_separate_groups_of_maps() -> None:
    rng = np.random.default_rng(0)
    blobs = np.zeros((3, 8, 8))
    blobs[0, :3, :3], blobs[1, 5:, 5:], blobs[2, 2:6, 2:6] = 1, 1, 1
    maps = np.concatenate([blob + rng.normal(0, 0.05, size=(15, 8, 8)) for blob in blobs])
    clusters, eigenvalues = strategies(normalised(maps).reshape(45, -1), neighbors=5, most=6, seed=0)
    assert len(set(clusters)) == 3
    for group in range(3):
        assert len(set(clusters[group * 15 : (group + 1) * 15])) == 1
    one, _ = strategies(normalised(blobs[2] + rng.normal(0, 0.05, size=(20, 8, 8))).reshape(20, -1), 5, 6, 0)
    assert len(set(one)) == 1


def test_off_object_numbers_see_corners_and_borders() -> None:
    corner = np.zeros((16, 16))
    corner[:3, 13:] = 1
    border, in_corner, where = off_object(corner, border=0.0625, corner=0.25)
    assert in_corner == 1 and where == "top-right" and 0.5 < border < 1
    frame = np.ones((16, 16))
    frame[1:-1, 1:-1] = 0
    assert off_object(frame, 0.0625, 0.25)[0] == 1
    centre = np.zeros((16, 16))
    centre[5:11, 5:11] = 1
    centre[0, 0] = -5  # negative relevance is not where the model looked
    assert off_object(centre, 0.0625, 0.25)[:2] == (0.0, 0.0)

"""The scenario of `ARCOSegmentTest`, Slicer's self-test, written against the Logic alone.

A bright ellipsoid ('Blob') in noise on an anisotropic, flipped grid; two slices painted → a new
model trained from scratch → segment with it (twice: the same segments are updated) → adapt it
from two more slices → check the segments, the held-out check and the suggested slices. In Slicer
it runs on the scene (`logic.mrml` = ARCOSegmentLib.mrml); outside Slicer the same code runs on
stand-in nodes (Testing/slicer). `check` is a unittest.TestCase (its assert methods).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ARCOSegmentLib.models import is_model_folder

PHANTOM_SHAPE = (20, 40, 40)  # (K, J, I)
PHANTOM_IJK_TO_RAS = np.array([[-0.8, 0, 0, 10], [0, -0.8, 0, 5], [0, 0, 2.0, -20], [0, 0, 0, 1]])
SEGMENT_NAME, SEGMENT_COLOR = "Blob", (1.0, 0.5, 0.0)
FIRST_SLICES, MORE_SLICES = (7, 13), (4, 10)
MIN_DICE = 0.5


def phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(int16 image (K, J, I), boolean truth): a bright ellipsoid in noise."""
    k, j, i = np.mgrid[:PHANTOM_SHAPE[0], :PHANTOM_SHAPE[1], :PHANTOM_SHAPE[2]]
    truth = ((k - 10) / 7.0) ** 2 + ((j - 20) / 12.0) ** 2 + ((i - 18) / 10.0) ** 2 <= 1
    noise = np.random.default_rng(seed).normal(0, 20, truth.shape)
    return (100 + 300 * truth + noise).astype(np.int16), truth


def painted(truth: np.ndarray, slices: Sequence[int]) -> np.ndarray:
    """The truth on `slices` (along K) only, as a clinician paints it."""
    mask = np.zeros(truth.shape, bool)
    mask[list(slices)] = truth[list(slices)]
    return mask


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks."""
    return 2 * np.count_nonzero(mask & truth) / (np.count_nonzero(mask) + np.count_nonzero(truth))


def draw(check, logic, volume, truth: np.ndarray, slices: Sequence[int]):
    """An annotation segmentation with the truth painted on `slices`; checks the panel's count."""
    node = logic.mrml.add_annotations(volume, "Annotations",
                                      [(SEGMENT_NAME, SEGMENT_COLOR, painted(truth, slices))])
    summary = logic.annotationSummary(volume, node)
    check.assertTrue(summary.startswith(f"{len(slices)} slices annotated along K"), summary)
    return node


def check_segments(check, logic, segmentation, volume, truth: np.ndarray) -> None:
    """One segment named after the class, overlapping the truth."""
    segments = logic.mrml.segments_of(segmentation)
    check.assertEqual(list(segments.values()), [SEGMENT_NAME])
    [(_, mask)] = logic.mrml.segment_masks(segmentation, [(next(iter(segments)), 1)], volume)
    check.assertGreater(dice(mask, truth), MIN_DICE)


def segment_and_adapt(check, logic, budgetSeconds: float = 60.0, iterations: int | None = None,
                      say: Callable[[str], Any] = print):
    """The whole self-test (CPU, a few minutes with the default budget); each adaptation stops
    at `budgetSeconds` or after `iterations`. Returns the second adaptation's AdaptResult."""
    array, truth = phantom()
    volume = logic.mrml.add_volume(array, PHANTOM_IJK_TO_RAS, "Phantom")
    say("Training a model from two drawn slices")
    first = logic.adapt(volume, draw(check, logic, volume, truth, FIRST_SLICES), fromScratch=True,
                        budgetSeconds=budgetSeconds, iterations=iterations, cpuOnly=True)
    model = first.output.model
    check.assertTrue(is_model_folder(model.path), model.path)
    check.assertEqual((model.name, model.kind, first.output.axis), (SEGMENT_NAME, "adapted", 0))
    check.assertIn(first.output.heldout_slice, FIRST_SLICES)
    check_segments(check, logic, first.segmentation, volume, truth)

    say("Segmenting with it")
    segmentation = logic.segment(volume, model=model.path, cpuOnly=True)
    check_segments(check, logic, segmentation, volume, truth)
    segmentIds = list(logic.mrml.segments_of(segmentation))
    logic.segment(volume, model=model.path, segmentationNode=segmentation, cpuOnly=True)
    check.assertEqual(list(logic.mrml.segments_of(segmentation)), segmentIds)

    say("Adapting it from two more slices")
    second = logic.adapt(volume, draw(check, logic, volume, truth, MORE_SLICES), model=model,
                         budgetSeconds=budgetSeconds, iterations=iterations,
                         segmentationNode=segmentation, cpuOnly=True)
    check.assertEqual(second.output.model.parent, model.ref)
    check.assertNotEqual(second.output.model.ref, model.ref)
    check.assertIs(second.segmentation, segmentation)
    check.assertIn(second.output.heldout_slice, MORE_SLICES)
    check_segments(check, logic, segmentation, volume, truth)
    check.assertTrue(second.suggestedSlices)
    for index in second.suggestedSlices:
        check.assertTrue(0 <= index < PHANTOM_SHAPE[0] and index not in MORE_SLICES, index)
        logic.jumpToSlice(volume, second.output.axis, index)
    return second

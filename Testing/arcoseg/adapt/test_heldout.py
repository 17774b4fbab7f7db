"""The held-out slice while Adapt trains: scored for the early stop, then a training slice."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from arcoseg.adapt import heldout
from arcoseg.adapt.annotations import hold_out, make_annotations, rejoin
from arcoseg.adapt.heldout import HeldOutSlice
from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.plan import Plan
from arcoseg.networks.model import NetworkConfig, build_model
from arcoseg.train.convergence import Convergence


def _plan(dims: int) -> Plan:
    patch = (32, 32) if dims == 2 else (8, 32, 32)
    return Plan(dims=dims, target_spacing=(1.0, 1.0, 1.0), normalization="zscore",
                label_values=[0, 1], patch_size=patch)


def _held_labels(z: int = 12, held: int = 6) -> np.ndarray:
    labels = np.full((z, 32, 32), IGNORE_LABEL, np.uint8)
    labels[held] = 0
    labels[held, 8:20, 8:20] = 1
    return labels


@pytest.mark.parametrize("dims, kept", [(2, (6, 7)), (3, (2, 11))])
def test_only_the_slices_around_the_held_out_one_are_scored(dims, kept):
    image = np.arange(12, dtype=np.float32)[None, :, None, None] * np.ones((1, 12, 32, 32))
    hook = HeldOutSlice(image, _held_labels(), [], _plan(dims), torch.device("cpu"))
    # 2D: the held-out slice alone; 3D: half a patch (4 slices) of context on each side
    assert hook.image[0, :, 0, 0].tolist() == list(range(*kept))
    assert hook.labels.shape == (kept[1] - kept[0], 32, 32)


def test_the_score_is_the_models_dice_on_the_held_out_slice():
    model = build_model(NetworkConfig(arch="unet2d", in_channels=1, num_classes=2,
                                      features=(4, 8, 16, 32, 64)))
    image = np.random.default_rng(0).normal(size=(1, 12, 32, 32)).astype(np.float32)
    hook = HeldOutSlice(image, _held_labels(), [], _plan(2), torch.device("cpu"))
    score = hook.score(model)
    assert score is not None and 0.0 <= score <= 1.0
    blank = HeldOutSlice(image, np.full((12, 32, 32), IGNORE_LABEL, np.uint8), [], _plan(2),
                         torch.device("cpu"))
    assert blank.score(model) is None  # nothing held out: nothing to score


class _Trainer(SimpleNamespace):
    """What the hook reads and changes on a Trainer."""

    def use_labelled(self, cases):
        self.labelled = cases


def _trainer(iterations: int, early_stop: bool = True) -> _Trainer:
    model = torch.nn.Linear(2, 2)
    convergence = Convergence(window=5, min_fraction=0.3)
    for _ in range(40):
        convergence.add(0.5)  # a flat loss: converged unless the held-out score improves
    return _Trainer(state=SimpleNamespace(iteration=0), max_iterations=iterations,
                    options=SimpleNamespace(iterations=iterations, early_stop=early_stop),
                    method=SimpleNamespace(eval_model=lambda: model), convergence=convergence,
                    reporter=SimpleNamespace(log=lambda text: None), labelled=["without"])


def _drive(hook: HeldOutSlice, trainer: _Trainer, scores, monkeypatch) -> None:
    """Call the hook every 5 iterations, as the Trainer does, until it releases the slice."""
    given = iter(scores)
    monkeypatch.setattr(HeldOutSlice, "score", lambda self, model: next(given))
    while hook.released_at is None and trainer.state.iteration < trainer.options.iterations:
        trainer.state.iteration += 5
        hook(trainer)


def test_training_goes_on_while_the_held_out_score_improves(monkeypatch):
    trainer = _trainer(1000)
    hook = HeldOutSlice(np.zeros((1, 12, 32, 32), np.float32), _held_labels(), ["with"],
                        _plan(2), torch.device("cpu"))
    # scores at 25, 50, ...: rising by 0.05 up to 0.9 at iteration 375, then flat
    rising = [min(0.2 + 0.05 * i, 0.9) for i in range(40)]
    _drive(hook, trainer, rising, monkeypatch)
    # the flat loss allowed a stop from 300 (30 %) on; at 400 the last two scores still beat
    # all before (0.9 against 0.85), at 425 they no longer do: the stop
    assert hook.released_at == 425
    assert [it for it, _ in hook.scores][-1] == 425
    # after a convergence the slice trains for TAIL of the iterations so far, then it ends
    assert trainer.options.iterations == trainer.max_iterations == 425 + 106
    assert trainer.labelled == ["with"] and trainer.options.early_stop is False
    assert hook.snapshot is not None
    trainer.state.iteration += 25
    hook(trainer)
    assert len(hook.scores) == 17  # released: no more scoring


def test_without_convergence_the_slice_joins_at_three_quarters_of_the_schedule(monkeypatch):
    trainer = _trainer(200, early_stop=False)
    hook = HeldOutSlice(np.zeros((1, 12, 32, 32), np.float32), _held_labels(), ["with"],
                        _plan(2), torch.device("cpu"))
    _drive(hook, trainer, [0.5] * 10, monkeypatch)
    assert hook.released_at == 150 and trainer.options.iterations == 200
    assert trainer.labelled == ["with"]


def test_a_budget_that_ends_the_run_early_never_releases_the_slice(monkeypatch):
    trainer = _trainer(200, early_stop=False)
    hook = HeldOutSlice(np.zeros((1, 12, 32, 32), np.float32), _held_labels(), ["with"],
                        _plan(2), torch.device("cpu"))
    monkeypatch.setattr(HeldOutSlice, "score", lambda self, model: 0.5)
    trainer.state.iteration = 100
    trainer.options.iterations = 100  # the budget ran out: the Trainer ends the run at 100
    hook(trainer)
    # the slice never trained: no release, and the final model is the one the check scores
    assert hook.released_at is None and hook.snapshot is None
    assert trainer.labelled == ["without"]


def test_the_checked_model_has_the_weights_of_the_release():
    final = torch.nn.Linear(2, 2)
    hook = HeldOutSlice(np.zeros((1, 12, 32, 32), np.float32), _held_labels(), [], _plan(2),
                        torch.device("cpu"))
    assert hook.checked_model(final) is final  # never released: the final model
    hook.snapshot = {k: torch.zeros_like(v) for k, v in final.state_dict().items()}
    checked = hook.checked_model(final)
    assert checked is not final and float(checked.weight.abs().sum()) == 0.0
    assert float(final.weight.abs().sum()) > 0.0  # the final model keeps its own weights


def test_rejoin_puts_the_held_out_slice_back():
    labels = np.zeros((5, 4, 4), np.uint8)
    labels[:, 1:3, 1:3] = 1
    drawn = make_annotations(np.where(np.isin(np.arange(5), [0, 2, 4])[:, None, None],
                                      labels, IGNORE_LABEL).astype(np.uint8), 2, axis=0)
    train, held = hold_out(drawn)
    back = rejoin(train, held)
    assert back.slices == [0, 2, 4]
    np.testing.assert_array_equal(back.labels, drawn.labels)
    assert rejoin(train, None) is train
    assert heldout.RELEASE_AT < 1.0

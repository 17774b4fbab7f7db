"""The optimiser choice: SGD as in the paper, AdamW for short runs from scratch."""

import pytest
import torch

from arcoseg.adapt import schedule
from arcoseg.errors import ArcosegError
from arcoseg.train.optimizer import WEIGHT_DECAY, make_optimizer
from arcoseg.train.options import TrainOptions


def test_sgd_is_the_papers_and_adamw_is_adamw():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer("sgd", params, 0.01)
    assert type(sgd) is torch.optim.SGD
    assert sgd.defaults["momentum"] == 0.9
    assert sgd.defaults["nesterov"] and sgd.defaults["weight_decay"] == WEIGHT_DECAY
    adamw = make_optimizer("adamw", params, 1e-3)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["lr"] == 1e-3


def test_an_unknown_optimiser_is_refused_by_name():
    with pytest.raises(ArcosegError, match="adam'"):
        make_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], 0.01)
    with pytest.raises(ArcosegError, match="--optimizer"):
        TrainOptions(optimizer="adam")


@pytest.mark.parametrize("requested,lr,expected", [
    (None, None, ("adamw", 1e-3)),
    ("sgd", None, ("sgd", 0.01)),
    ("adamw", 5e-4, ("adamw", 5e-4)),
])
def test_adapt_trains_with_adamw_unless_asked(requested, lr, expected):
    assert schedule.optimizer(requested, lr) == expected


def test_adapt_warm_up_defaults():
    assert schedule.warmup_fraction(None, True, "arco") == schedule.SCRATCH_WARMUP
    assert schedule.warmup_fraction(None, True, "supervised") == 0.0
    assert schedule.warmup_fraction(None, False, "arco") == 0.0
    assert schedule.warmup_fraction(0.2, False, "arco") == 0.2

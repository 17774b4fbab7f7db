"""EMA teacher and the sigmoid ramp-up."""

import math

import torch
from torch import nn

from arcoseg.arco.teacher import batch_statistics, ema_update, make_teacher, sigmoid_rampup


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Dropout(0.5))


def test_teacher_is_a_frozen_eval_mode_copy():
    student = net()
    teacher = make_teacher(student)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    for a, b in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_ema_update_follows_the_formula_for_parameters_and_bn_statistics():
    student = net()
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student.train()(torch.randn(4, 1, 6, 6))  # changes running stats, num_batches_tracked = 1
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, momentum=0.9)
    after, current = teacher.state_dict(), student.state_dict()
    for key, old in before.items():
        if key.endswith("num_batches_tracked"):
            assert int(after[key]) == int(current[key]) == 1
        else:
            assert torch.allclose(after[key], 0.9 * old + 0.1 * current[key])
    assert not teacher.training


def test_ema_update_gives_the_teacher_no_gradient():
    student = net()
    teacher = make_teacher(student)
    ema_update(teacher, student)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 100) == math.exp(-5)
    assert sigmoid_rampup(50, 100) == math.exp(-5 * 0.25)
    assert sigmoid_rampup(100, 100) == sigmoid_rampup(500, 100) == 1.0
    assert sigmoid_rampup(0, 0) == 1.0


def test_batch_statistics_normalise_by_the_batch_and_leave_running_statistics_alone():
    teacher = make_teacher(net())
    x = 5.0 + 3.0 * torch.randn(6, 1, 8, 8)  # far from the initial running mean 0 / var 1
    running = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad(), batch_statistics(teacher):
        features = teacher[1](teacher[0](x))
        mean = features.mean((0, 2, 3))
        assert torch.equal(teacher(x), teacher(x))  # dropout stays off
    assert torch.allclose(mean, teacher[1].bias, atol=1e-4)  # normalised by the batch mean
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, running[key]), key
    assert not teacher.training and not teacher[1].training and teacher[1].momentum == 0.1


def test_batch_statistics_can_be_switched_off():
    teacher = make_teacher(net())
    x = torch.randn(2, 1, 8, 8)
    expected = teacher(x)
    with batch_statistics(teacher, enabled=False):
        assert torch.equal(teacher(x), expected) and not teacher[1].training

"""--amp: off by default; --channels-last: on by default on the CPU only (measured faster there);
a training step with them stays finite; the float32 paths of every method hold under bfloat16
autocast (what --amp does on CUDA)."""

import pytest
import torch

from arcoseg.data.synthetic import make_phantom_dataset
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg import device as device_module
from arcoseg.device import autocast
from arcoseg.train.precision import memory_format, uses_grad_scaler
from arcoseg.train.trainer import Trainer, prepare_data

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_phantom_dataset(tmp_path_factory.mktemp("ds") / "Phantom", num_cases=4,
                                shape_zyx=(6, 32, 32), val_cases=1)


def test_mixed_precision_is_off_and_channels_last_follows_the_device_by_default():
    options = TrainOptions()
    assert (options.amp, options.channels_last, options.sync_bn) == (False, None, False)
    assert memory_format(2, None, CPU) == torch.channels_last
    assert memory_format(3, None, CPU) == torch.channels_last_3d
    assert memory_format(2, None, torch.device("cuda")) == torch.contiguous_format
    assert memory_format(2, False, CPU) == torch.contiguous_format  # --no-channels-last


def test_a_cpu_trainer_uses_channels_last_unless_told_not_to(dataset, tmp_path):
    def first_conv_weight(trainer):
        return next(m.weight for m in trainer.model.backbone.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)

    default = first_conv_weight(_trainer(dataset, tmp_path / "a", method="supervised"))
    assert default.is_contiguous(memory_format=torch.channels_last)
    plain = first_conv_weight(_trainer(dataset, tmp_path / "b", method="supervised",
                                       channels_last=False))
    assert plain.is_contiguous() and not plain.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("native", [True, False])
def test_amp_on_the_cpu_is_bfloat16_only_where_the_cpu_has_it_natively(monkeypatch, native):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    with autocast(CPU, True):
        assert torch.is_autocast_enabled("cpu") == native
        if native:
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast(CPU, False):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(CPU, True, dims=3):  # 3D networks stay float32 on the CPU
        assert not torch.is_autocast_enabled("cpu")
    assert not uses_grad_scaler(CPU, True)
    assert memory_format(3, True) == torch.channels_last_3d
    assert memory_format(2, False) == torch.contiguous_format


def _trainer(dataset, tmp_path, **kw) -> Trainer:
    options = TrainOptions(dims=2, labelled=2, iterations=50, batch=2, patch=(32, 32),
                           device="cpu", val_every=10**6, checkpoint_every=10**6, log_every=1,
                           cache_dir=tmp_path / "cache", **kw)
    return Trainer(prepare_data(dataset, options, Reporter(quiet=True)), options,
                   tmp_path / "model", Reporter(quiet=True))


@pytest.mark.parametrize("method", ["supervised", "mean_teacher", "arco"])
def test_a_channels_last_step_trains_with_finite_losses(dataset, tmp_path, method):
    trainer = _trainer(dataset, tmp_path, method=method, channels_last=True, amp=True)
    conv = trainer.model.backbone.modules()
    weight = next(m.weight for m in conv if isinstance(m, torch.nn.Conv2d))
    assert weight.is_contiguous(memory_format=torch.channels_last)
    before = weight.detach().clone()
    for _ in range(2):
        trainer._step()
    record = trainer.log.records()[-1]
    assert all(torch.isfinite(torch.tensor(v)) for k, v in record.items() if k.startswith("loss"))
    assert not torch.equal(before, weight.detach())


@pytest.mark.parametrize("method", ["supervised", "mean_teacher", "arco"])
def test_under_bfloat16_autocast_the_losses_are_float32_and_finite(dataset, tmp_path, method):
    trainer = _trainer(dataset, tmp_path, method=method)
    labelled = trainer.labelled_sampler.sample()
    unlabelled = trainer.unlabelled_sampler.sample() if trainer.unlabelled_sampler else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, terms = trainer.method.training_step(trainer.model, labelled, unlabelled, 0, 50)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    for key, value in terms.items():
        if key.startswith("loss"):
            assert value.dtype == torch.float32 and torch.isfinite(value), key
    loss.backward()
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())

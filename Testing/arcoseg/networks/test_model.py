"""NetworkConfig: validation, JSON round trip, and build_model."""

from __future__ import annotations

import json

import pytest
import torch

from arcoseg.errors import ModelFileError
from arcoseg.networks import NetworkConfig, build_model
from arcoseg.networks.model import with_default_head


@pytest.mark.parametrize("config", [
    NetworkConfig("unet2d", in_channels=2, num_classes=4, features=(8, 16, 32, 64, 128),
                  head_dim=64, head_stride=4),
    NetworkConfig("vnet3d", num_classes=3, base_filters=8),
])
def test_config_round_trips_through_json(config: NetworkConfig) -> None:
    assert NetworkConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_config_dict_holds_only_the_width_setting_of_its_architecture() -> None:
    assert "base_filters" not in NetworkConfig("unet2d").to_dict()
    assert "features" not in NetworkConfig("vnet3d").to_dict()


def test_config_reports_spatial_dims_and_input_divisor() -> None:
    assert NetworkConfig("unet2d").spatial_dims == 2
    assert NetworkConfig("vnet3d").spatial_dims == 3
    assert NetworkConfig("vnet3d").input_divisor == 16


GOOD = {"arch": "unet2d", "in_channels": 1, "num_classes": 4}


@pytest.mark.parametrize("data, message", [
    ({**GOOD, "arch": "swinunetr"}, "Unknown network architecture 'swinunetr'"),
    ({**GOOD, "depth": 5}, "unknown settings \\['depth'\\]"),
    ({**GOOD, "arch": "vnet3d", "features": [1, 2, 3, 4, 5]}, "unknown settings \\['features'\\]"),
    ({"arch": "unet2d", "in_channels": 1}, "lacks \\['num_classes'\\]"),
    ({**GOOD, "num_classes": 1}, "'num_classes' must be an integer from 2 to 255"),
    ({**GOOD, "num_classes": 256}, "'num_classes' must be an integer from 2 to 255"),
    ({**GOOD, "in_channels": True}, "'in_channels' must be an integer"),
    ({**GOOD, "features": [16, 32, 64]}, "'features' must be 5 integers from 1 to 4096"),
    ({**GOOD, "features": "16,32"}, "'features' must be 5 integers from 1 to 4096"),
    # the tester's R5: a width of 10**12 overflowed torch's storage size (exit 1)
    ({**GOOD, "features": [10**12, 32, 64, 128, 256]}, "'features' must be 5 integers"),
    ({**GOOD, "arch": "vnet3d", "base_filters": 10**12}, "'base_filters' must be an integer"),
    ({**GOOD, "head_dim": 0}, "'head_dim' must be an integer from 1 to 4096"),
    ({**GOOD, "head_stride": 3}, "'head_stride' must be one of"),
    ({**GOOD, "head_stride": 2.0}, "'head_stride' must be one of"),
    ([1, 2], "must be a JSON object"),
])
def test_config_from_bad_dict_raises_model_file_error(data, message: str) -> None:
    with pytest.raises(ModelFileError, match=message):
        NetworkConfig.from_dict(data)


def test_build_model_follows_the_config() -> None:
    config = NetworkConfig("unet2d", in_channels=2, num_classes=3, features=(4, 8, 16, 32, 64),
                           head_dim=12, head_stride=2)
    model = build_model(config).eval()
    logits, embeddings = model.forward_train(torch.randn(1, 2, 32, 32))
    assert logits.shape == (1, 3, 32, 32) and embeddings.shape == (1, 12, 16, 16)
    assert model.config == config


def test_build_model_without_head_dim_has_no_head() -> None:
    model = build_model(NetworkConfig("vnet3d", base_filters=4))
    assert model.head is None
    assert model(torch.randn(2, 1, 16, 16, 16)).shape == (2, 2, 16, 16, 16)


def test_a_new_head_is_64_wide_at_a_quarter_of_the_input_in_2d_and_32_at_half_in_3d() -> None:
    model = build_model(with_default_head(NetworkConfig("unet2d", features=(4, 8, 16, 32, 64))))
    _, embeddings = model.forward_train(torch.randn(1, 1, 64, 48))
    assert embeddings.shape == (1, 64, 16, 12)
    model = build_model(with_default_head(NetworkConfig("vnet3d", base_filters=4)))
    _, embeddings = model.forward_train(torch.randn(1, 1, 16, 32, 32))
    assert embeddings.shape == (1, 32, 8, 16, 16)


def test_a_parents_head_is_kept_as_trained() -> None:
    parent = NetworkConfig("unet2d", head_dim=12, head_stride=2)
    assert with_default_head(parent) is parent

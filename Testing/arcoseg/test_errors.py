"""errors.check_choice: an unknown setting value names the setting and every choice."""

import pytest

from arcoseg.arco.config import ArcoConfig
from arcoseg.errors import ArcosegError, check_choice


def test_a_listed_value_passes():
    check_choice("sg", ("ns", "sg", "sag"), "--sampler")


def test_an_unknown_value_names_the_setting_and_the_choices():
    with pytest.raises(ArcosegError, match=r"Unknown --sampler 'xx'\. Choose one of: ns, sg, sag\."):
        check_choice("xx", ("ns", "sg", "sag"), "--sampler")


@pytest.mark.parametrize("field, value, setting", [
    ("method", "fixmatch", "semi-supervised method"), ("mix", "sideways", "mixing mode"),
    ("teacher_norm", "layer", "teacher normalisation"), ("sampler", "xx", "sampler")])
def test_arco_config_refuses_unknown_choices(field, value, setting):
    with pytest.raises(ArcosegError, match=f"Unknown {setting} '{value}'"):
        ArcoConfig(**{field: value})

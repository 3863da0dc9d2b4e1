"""Channel labels come from the channels' declarations; anything else shows itself."""

from __future__ import annotations

import pytest

from channels.registry import DECLARATIONS
from dispatcher.labels import channel_label


@pytest.mark.parametrize("name", sorted(DECLARATIONS))
def test_a_channel_is_shown_by_its_declared_label(name: str) -> None:
    assert channel_label(name) == DECLARATIONS[name].label


def test_the_words_a_step_may_use_beside_channels_have_labels() -> None:
    assert channel_label("default") == "默认渠道"
    assert channel_label("voice") == "语音电话"


def test_a_name_nothing_declares_is_shown_as_itself() -> None:
    assert channel_label("carrier_pigeon") == "carrier_pigeon"

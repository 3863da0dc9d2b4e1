"""Each channel declares its facts once, as data in its own module; nothing else spells them.

Adding a channel is its module (with its DECLARATION and send()), its settings and
its construction in dispatcher/channelset.py (docs/channels.md): these tests fail
when a declared channel has no module of its name, is not built from settings, or
when a dispatcher/ module keeps its own table of channel names.
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
from pathlib import Path

import httpx
import pytest

import channels
from channels.base import Addressing, Channel, ChannelDeclaration, Medium
from channels.registry import DECLARATIONS, declaration, declarations_in, medium_of
from dispatcher.channelset import build_channels
from dispatcher.settings import Settings
from rules.templates import TEMPLATE_KINDS

ROOT = Path(__file__).resolve().parents[2]
COUNTY = ROOT / "examples" / "liulin"

# The bureau's own words for each channel, and what each reaches.
FACTS = [
    ("console", "控制台", Medium.SMS, Addressing.PHONE, True),
    ("twilio_sms", "短信", Medium.SMS, Addressing.PHONE, True),
    ("twilio_voice", "语音电话", Medium.VOICE, Addressing.PHONE, False),
    ("broadcast", "村村响广播", Medium.BROADCAST, Addressing.VILLAGE, False),
    ("wecom", "企业微信", Medium.IM, Addressing.ROBOT, True),
    ("dingtalk", "钉钉", Medium.IM, Addressing.ROBOT, True),
    ("feishu", "飞书", Medium.IM, Addressing.ROBOT, True),
    ("webhook", "业务系统推送", Medium.IM, Addressing.TARGET, True),
]

# dispatcher/ modules that may spell a channel's name: the two that configure channels.
CONFIGURES_CHANNELS = {"dispatcher/channelset.py", "dispatcher/settings.py"}

# (module, literal) pairs elsewhere in dispatcher/ that equal a channel's name but
# are not a fact about that channel.
NOT_A_CHANNEL_FACT = {
    # an acknowledgement *method* (on the duty console), not the console channel
    ("dispatcher/alerts/acknowledge.py", "console"),
    ("dispatcher/labels.py", "console"),
    ("dispatcher/web/console.py", "console"),
    # a configuration value: drills always deliver to the console
    ("dispatcher/drill.py", "console"),
    # the `broadcast:` key of an escalation step (escalation.yaml, and the JSON of a
    # timer's plan): a word of the configuration language, not the channel's name
    ("dispatcher/escalation/config.py", "broadcast"),
    ("dispatcher/escalation/plan.py", "broadcast"),
    # a configuration value: a drill's default channel is what a county's daemon uses
    ("dispatcher/drill.py", "twilio_sms"),
    # the built-in escalation policies are configuration: they call the leader
    ("dispatcher/escalation/policy.py", "twilio_voice"),
}


@pytest.mark.parametrize(("name", "label", "medium", "addressing", "links"), FACTS)
def test_each_channel_declares_its_label_medium_addressing_and_links(
    name: str, label: str, medium: Medium, addressing: Addressing, links: bool
) -> None:
    declared = DECLARATIONS[name]
    assert (declared.name, declared.label, declared.medium) == (name, label, medium)
    assert (declared.addressing, declared.carries_links) == (addressing, links)


def test_the_registry_holds_exactly_the_declared_channels() -> None:
    assert sorted(DECLARATIONS) == sorted(name for name, *_ in FACTS)
    assert channels.DECLARATIONS is DECLARATIONS


@pytest.mark.parametrize("name", sorted(DECLARATIONS))
def test_every_declared_channel_is_the_declaration_of_its_own_module(name: str) -> None:
    assert (ROOT / "channels" / f"{name}.py").is_file()
    module = importlib.import_module(f"channels.{name}")
    assert module.DECLARATION is DECLARATIONS[name]


async def test_every_declared_channel_is_built_from_settings_under_its_declaration() -> None:
    # given settings for every channel there is
    # long secrets: building a channel registers its secrets with the log redaction,
    # and a one-letter one would blank that letter in every later test's log lines
    secret = "SECdeclarations-not-shown"
    settings = Settings(
        _env_file=None,
        config_dir=COUNTY,
        twilio_account_sid="AC" + "1" * 32,
        twilio_auth_token=secret + "-twilio",
        twilio_from_number="+15005550006",
        public_base_url="https://yujing.example.gov.cn",
        wecom_robots=json.dumps({"duty-room": secret + "-wecom"}),
        dingtalk_robots=json.dumps({"duty": {"access_token": secret + "-ding", "secret": secret}}),
        feishu_bots=json.dumps({"duty": {"hook_id": secret + "-hook", "secret": secret}}),
        webhook_targets=json.dumps(
            {"gis": {"url": "https://gis.example.gov.cn", "secret": secret}}
        ),
        broadcast_base_url="http://broadcast.example.gov.cn",
        broadcast_secret=secret,
    )
    # when they are built
    async with httpx.AsyncClient() as http:
        built = build_channels(settings, http)
    # then each declared channel exists under its declared name, declaring what its module does
    assert sorted(built) == sorted(DECLARATIONS)
    for name, channel in built.items():
        assert isinstance(channel, Channel)
        assert channel.name == name
        assert channel.declaration == DECLARATIONS[name]


def test_a_second_instance_of_a_channel_keeps_its_facts_under_its_own_name() -> None:
    wecom = DECLARATIONS["wecom"]
    other = wecom.named("wecom-province")
    assert other.name == "wecom-province"
    assert (other.label, other.medium, other.addressing) == (
        wecom.label,
        Medium.IM,
        wecom.addressing,
    )
    assert wecom.named("wecom") is wecom


def test_only_the_console_is_a_stand_in() -> None:
    assert [name for name, d in DECLARATIONS.items() if d.stand_in] == ["console"]


def test_template_kinds_in_rule_files_are_the_media_channels_declare() -> None:
    # rules/ may not import channels/, so it spells the media: they must stay one vocabulary
    assert set(TEMPLATE_KINDS) == {m.value for m in Medium}


@pytest.mark.parametrize(("name", "medium"), [(n, m) for n, _, m, *_ in FACTS])
def test_a_channels_text_is_worded_for_its_declared_medium(name: str, medium: Medium) -> None:
    assert medium_of(name) is medium


def test_a_channel_nobody_declares_gets_sms_wording_and_no_declaration() -> None:
    assert declaration("carrier_pigeon") is None
    assert medium_of("carrier_pigeon") is Medium.SMS


def test_two_modules_declaring_one_name_are_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "twochannels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = (
        "from channels.base import Addressing, ChannelDeclaration, Medium\n"
        "DECLARATION = ChannelDeclaration('pager', 'x', Medium.SMS, Addressing.PHONE, False)\n"
    )
    (package / "a.py").write_text(source)
    (package / "b.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(RuntimeError, match=r"twochannels\.b .*'pager'.*twochannels\.a"):
            declarations_in("twochannels")
    finally:
        for module in ("twochannels", "twochannels.a", "twochannels.b"):
            sys.modules.pop(module, None)


def _channel_names_spelled_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if node.value in DECLARATIONS
    }


def test_no_dispatcher_module_but_the_channel_configuration_spells_a_channels_name() -> None:
    # a channel's facts are read from its declaration; a name spelled anywhere else
    # is a sixth table that a new channel would have to be added to
    found = {
        (rel, name)
        for path in sorted((ROOT / "dispatcher").rglob("*.py"))
        if (rel := path.relative_to(ROOT).as_posix()) not in CONFIGURES_CHANNELS
        for name in _channel_names_spelled_in(path)
    }
    assert found - NOT_A_CHANNEL_FACT == set(), (
        "read these channels' facts from channels.registry.DECLARATIONS instead, "
        "or add the literal to NOT_A_CHANNEL_FACT with the reason it is not a channel fact"
    )
    assert NOT_A_CHANNEL_FACT - found == set(), "remove allowances that are no longer needed"


def test_the_enforcement_finds_a_channel_name_spelled_in_a_module(tmp_path: Path) -> None:
    module = tmp_path / "kinds.py"
    module.write_text('KIND = {"wecom": "im"}\nOTHER = "wecomx"\n')
    assert _channel_names_spelled_in(module) == {"wecom"}


def test_declarations_are_frozen_data() -> None:
    declared = DECLARATIONS["twilio_sms"]
    assert isinstance(declared, ChannelDeclaration)
    with pytest.raises(AttributeError):
        declared.label = "短消息"  # type: ignore[misc]
    with pytest.raises(TypeError):
        DECLARATIONS["pager"] = declared  # type: ignore[index]

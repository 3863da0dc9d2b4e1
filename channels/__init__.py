"""Delivery channels: one module per channel behind one small Protocol (`base.Channel`).
Imports nothing from dispatcher/: a channel is given what it needs (client, settings).

base.py         the interface: Channel, OutgoingMessage, SendResult, ChannelLimits,
                ChannelDeclaration (each channel module's DECLARATION: label, medium, …)
registry.py     DECLARATIONS: every channel module's declaration, by name
console.py      prints each message instead of sending it (drills, development)
twilio_rest.py  one Twilio account shared by SMS and voice
twilio_http.py  httpx-backed HTTP clients for the `twilio` package
twilio_sms.py   SMS through Twilio Programmable Messaging
twilio_voice.py voice calls through Twilio Programmable Voice: the warning read aloud
broadcast.py    village broadcast (村村响) through a vendor's HTTP gateway; broadcast_profiles/
dingtalk.py     DingTalk (钉钉) custom robot
feishu.py       Feishu (飞书) custom bot
wecom.py        WeCom (企业微信) group robot
webhook.py      a generic signed JSON webhook for the bureau's other systems
http_result.py  shared HTTP plumbing: send one request, classify what came back
sms_text.py     how many SMS segments a text takes (GSM-7 or UCS-2)
redaction.py    keeping secrets out of reasons, log lines and reprs
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from channels.registry import DECLARATIONS as DECLARATIONS


def __getattr__(name: str) -> object:
    # `channels.DECLARATIONS` on first use: importing channels.base alone must not
    # import every channel module (and their HTTP and TwiML libraries).
    if name == "DECLARATIONS":
        from channels.registry import DECLARATIONS

        return DECLARATIONS
    raise AttributeError(f"module 'channels' has no attribute {name!r}")

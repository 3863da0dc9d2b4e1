"""The words people read: the one table of Chinese labels for stored vocabularies.

The console, the report, the acknowledgement replies and pages, and the CLI
all show an alert's state, a message's status, a level or a role in the same
words, taken from here. The stored values themselves (the keys) are in
`dispatcher.states`; a level's Chinese name is `rules.types.Level.zh`, so the
level tables below are built from `Level`, not spelled again.

A value without a label (a row written by a newer release, a provider's own
receipt status) is shown as itself: the `*_label` functions fall back to the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from channels.base import Medium
from channels.registry import declaration
from dispatcher.county import DUTY_ROLE_LABELS, ROLE_LABELS
from dispatcher.states import AlertState, NotificationStatus
from rules.types import Level

__all__ = [
    "ACK_METHOD_LABELS",
    "ALERT_STATE_LABELS",
    "AUDIT_ACTION_LABELS",
    "LEVEL_LABELS",
    "MEDIUM_LABELS",
    "NOTIFICATION_STATUS_LABELS",
    "PERSON_ROLE_LABELS",
    "RISK_LABELS",
    "SUPERSEDED_SENTENCE",
    "TRANSITION_LABELS",
    "ZONE_KIND_LABELS",
    "alert_state_label",
    "channel_label",
    "level_label",
    "no_ack_needed",
    "severity",
]

#: Level key → Chinese signal colour, most severe first (the order the console lists them in).
LEVEL_LABELS: Final[Mapping[str, str]] = {level.key: level.zh for level in reversed(Level)}

#: An alert's state in a word or two (a board cell, a report column).
ALERT_STATE_LABELS: Final[Mapping[str, str]] = {
    AlertState.FIRING: "待确认",
    AlertState.ACKNOWLEDGED: "已确认",
    AlertState.RESOLVED: "已解除",
    AlertState.SUPERSEDED: "已变更等级",
    AlertState.CANCELLED: "已取消",
}

#: What "superseded" means, where a sentence is wanted (the reply to a late acknowledgement).
SUPERSEDED_SENTENCE: Final = "已变更等级，由新的预警接替"

#: An outbox row's status.
NOTIFICATION_STATUS_LABELS: Final[Mapping[str, str]] = {
    NotificationStatus.PENDING: "待发送",
    NotificationStatus.SENDING: "发送中",
    NotificationStatus.SENT: "已发出",
    NotificationStatus.DELIVERED: "已送达",
    NotificationStatus.UNDELIVERED: "未送达",
    NotificationStatus.FAILED: "发送失败",
    NotificationStatus.CANCELLED: "已取消",
}

#: How an acknowledgement arrived (`alerts.acknowledge.METHODS`).
ACK_METHOD_LABELS: Final[Mapping[str, str]] = {
    "sms": "短信回复",
    "voice": "电话按键",
    "link": "链接确认",
    "console": "值班台",
    "cli": "命令行",
}

#: A notification's transition (what the message announced): an alert's, or the overdue report.
TRANSITION_LABELS: Final[Mapping[str, str]] = {
    "new": "发布",
    "upgraded": "升级",
    "downgraded": "降级",
    "resolved": "解除",
    "esc.overdue": "超时上报",
}

#: An audit event's action, as an alert's timeline shows it.
AUDIT_ACTION_LABELS: Final[Mapping[str, str]] = {
    "alert.new": "发布预警",
    "alert.upgraded": "等级升高",
    "alert.downgraded": "等级降低",
    "alert.continued": "预警持续",
    "alert.resolved": "预警解除",
    "alert.superseded": "等级变更，由新的预警接替",
    "alert.calming": "条件减弱，观察中",
    "alert.data_missing": "预报数据缺失",
    "alert.changed": "告警内容更新",
    "alert.acknowledged": "确认完成",
    "alert.overdue": "超时未确认（迟报）",
    "alert.ack": "收到确认",
    "ack.refused": "确认未被接受",
    "escalation.started": "启动逐级通知",
    "escalation.step": "逐级通知",
    "escalation.skipped": "补发时合并提醒",
    "escalation.deadline": "确认期限已到",
    "escalation.cancelled": "后续通知已取消",
}

#: How a text is worded (`channels.base.Medium`), where a medium rather than a channel is named.
MEDIUM_LABELS: Final[Mapping[str, str]] = {
    Medium.SMS: "短信",
    Medium.VOICE: "语音电话",
    Medium.BROADCAST: "广播",
    Medium.IM: "群消息",
}

#: Every role a person can hold: the zone roles, then the bureau's duty roles.
PERSON_ROLE_LABELS: Final[Mapping[str, str]] = {**ROLE_LABELS, **DUTY_ROLE_LABELS}

#: A zone's kind of geohazard (`rules.schema.ZONE_KINDS`).
ZONE_KIND_LABELS: Final[Mapping[str, str]] = {
    "landslide": "滑坡",
    "collapse": "崩塌",
    "debris_flow": "泥石流",
    "subsidence": "地面塌陷",
    "ground_fissure": "地裂缝",
    "unstable_slope": "不稳定斜坡",
}

#: A zone's risk level (`rules.schema.RISK_LEVELS`).
RISK_LABELS: Final[Mapping[str, str]] = {
    "low": "低",
    "medium": "中",
    "high": "高",
    "very_high": "极高",
}


def level_label(key: str) -> str:
    """'橙色' for `orange`; an unknown key is shown as itself."""
    try:
        return Level.parse(key).zh
    except ValueError:
        return key


def severity(key: str) -> int:
    """A level key's rank, to list levels as `Level` orders them; 0 for `none` or unknown."""
    try:
        return Level.parse(key).value
    except ValueError:
        return 0


def channel_label(name: str) -> str:
    """'短信' for `twilio_sms`: a channel's declared label (`channels.registry`).

    A step's `default` is 默认渠道 and a medium's name its word; a name nothing
    declares (a channel of another release, a test's) is shown as itself.
    """
    declared = declaration(name)
    if declared is not None:
        return declared.label
    # `escalation.policy.DEFAULT_CHANNEL`, spelled here: importing the escalation
    # package into the vocabulary would tie every label reader to the engine
    if name == "default":
        return "默认渠道"
    return MEDIUM_LABELS.get(name, name)


def alert_state_label(state: str) -> str:
    """'待确认' for `firing`; an unknown state is shown as itself."""
    return ALERT_STATE_LABELS.get(state, state)


def no_ack_needed(code: str, state: str) -> str:
    """'预警K7QA已解除，无需确认': the answer to acknowledging an alert that is no longer open."""
    what = SUPERSEDED_SENTENCE if state == AlertState.SUPERSEDED else alert_state_label(state)
    return f"预警{code}{what}，无需确认"

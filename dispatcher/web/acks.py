"""Acknowledging from a phone: SMS reply, voice keypress and the signed link.

    POST /webhooks/twilio/sms          Twilio inbound SMS (signed); answers in TwiML
    POST /webhooks/twilio/voice/ack?n=ID
                                       the voice call's <Gather> (signed); ID is the
                                       notification the call delivers
    GET  /ack/{token}                  the alert and a confirm button (never acknowledges)
    POST /ack/{token}                  acknowledges, with an optional note

Twilio webhooks without a valid signature get 403 and change nothing. Ack
links that are altered get 403, expired ones 410, and record nothing. Every
acknowledgement goes through `dispatcher.alerts.acknowledge`, which records who,
when, how and the note; replies that acknowledge nothing are audited as
`ack.refused` (a stranger's text or an unreadable reply is evidence too).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from dispatcher import audit
from dispatcher.acklinks import AckClaim, LinkError, LinkExpired, ensure_secret_key, read_token
from dispatcher.alerts.acknowledge import (
    EVENT_FOR_BUREAU,
    NOT_YOURS,
    AckOutcome,
    acknowledge,
    find_open_alert_by_code,
    latest_open_alert_for,
)
from dispatcher.labels import alert_state_label, level_label, no_ack_needed
from dispatcher.states import OPEN_ALERT_STATES, AlertKind
from dispatcher.storage.models import Alert, InboundMessage, Notification, Person, Zone
from dispatcher.web.ids import parse_id
from dispatcher.web.state import AppState
from dispatcher.web.twilio_signature import public_url, verified_twilio_form

__all__ = ["AckReply", "parse_ack_reply", "router"]

NOTE_MAX_CHARS: Final = 500
_TWIML: Final = "application/xml"

# After NFKC (full-width → ASCII) and casefold: an accepted word, optionally
# the alert code (letters and digits) after spaces or punctuation, nothing else.
_REPLY: Final = re.compile(
    r"(?:1|收到|确认|ok)(?:[\s,.:;!、。：；]*(?P<code>[0-9a-z]{3,8}))?[\s,.!。]*",
)
_LINK_TAIL: Final = re.compile(r"\s*确认：https?://\S+\s*$")

_T = TypeVar("_T")

HELP_REPLY: Final = "确认预警请回复1，或回复1加短信中的预警编码，如“1 K7QA”。"


@dataclass(frozen=True)
class AckReply:
    """A reply that means "acknowledged", and the alert code it names, if any."""

    code: str | None


def parse_ack_reply(text: str) -> AckReply | None:
    """Read an SMS reply: `1`, `收到`, `确认`, `ok` (any width or case), optionally + code.

    Returns None for anything else. The code comes back in upper case.
    """
    normal = unicodedata.normalize("NFKC", text).casefold().strip()
    match = _REPLY.fullmatch(normal)
    if match is None:
        return None
    code = match.group("code")
    return AckReply(code.upper() if code else None)


def router(state: AppState) -> APIRouter:
    """The acknowledgement routes, bound to the application's state."""
    ensure_secret_key(state.settings)  # the pipeline signs links with the same settings
    r = APIRouter()
    pages = Environment(
        loader=PackageLoader("dispatcher.web", "templates"),
        autoescape=select_autoescape(default=True),
    )

    @r.post("/webhooks/twilio/sms")
    async def sms_reply(request: Request) -> Response:
        form = await verified_twilio_form(request, state.settings)
        if form is None:
            return Response("invalid signature", status_code=403, media_type="text/plain")
        answer = await run_in_threadpool(
            _in_transaction,
            state,
            lambda session: answer_sms(
                session,
                sender=form.get("From", ""),
                body=form.get("Body", ""),
                now=state.clock(),
                message_id=form.get("MessageSid") or form.get("SmsSid") or None,
            ),
        )
        reply = MessagingResponse()
        reply.message(answer)
        return Response(str(reply), media_type=_TWIML)

    @r.post("/webhooks/twilio/voice/ack")
    async def voice_ack(request: Request) -> Response:
        form = await verified_twilio_form(request, state.settings)
        if form is None:
            return Response("invalid signature", status_code=403, media_type="text/plain")
        digits = form.get("Digits", "").strip()
        notification = request.query_params.get("n", "")
        call = await run_in_threadpool(
            _in_transaction,
            state,
            lambda session: answer_keypress(
                session,
                notification=notification,
                digits=digits,
                again=public_url(request, state.settings),
                now=state.clock(),
                voice=state.settings.twilio_voice_name,
                language=state.settings.twilio_voice_language,
            ),
        )
        return Response(str(call), media_type=_TWIML)

    @r.get("/ack/{token}")
    def ack_page(token: str) -> HTMLResponse:
        now = state.clock()
        try:
            claim = read_token(ensure_secret_key(state.settings), token, now)
        except LinkError as exc:
            return _link_refused(pages, exc)
        with state.sessions() as session:
            view = _alert_view(session, claim, state.settings.timezone)
        if view is None:
            return _page(pages, 404, title="未找到预警", message="该预警不存在，请联系值班室。")
        return _page(pages, 200, title="预警确认", view=view)

    @r.post("/ack/{token}")
    async def ack_confirm(token: str, request: Request) -> HTMLResponse:
        now = state.clock()
        try:
            claim = read_token(ensure_secret_key(state.settings), token, now)
        except LinkError as exc:
            return _link_refused(pages, exc)
        form = await request.form()
        note = str(form.get("note") or "").strip()[:NOTE_MAX_CHARS] or None

        def confirm(session: Session) -> tuple[AckOutcome | None, dict[str, Any] | None]:
            alert = session.get(Alert, claim.alert_id)
            if alert is None:
                return None, None
            outcome = acknowledge(
                session,
                alert=alert,
                person_id=claim.person_id,
                actor=claim.person_id,
                method="link",
                note=note,
                at=now,
            )
            return outcome, _alert_view(session, claim, state.settings.timezone)

        outcome, view = await run_in_threadpool(_in_transaction, state, confirm)
        if outcome is None:
            return _page(pages, 404, title="未找到预警", message="该预警不存在，请联系值班室。")
        if outcome.accepted:
            message = f"{outcome.reason}。谢谢！"
            return _page(pages, 200, title="已确认", message=message, view=view, done=True, ok=True)
        message = f"未能确认：{outcome.reason}。"
        return _page(pages, 409, title="未能确认", message=message, view=view, done=True)

    return r


def _in_transaction(state: AppState, work: Callable[[Session], _T]) -> _T:
    """Run `work` in one committed transaction (in a worker thread: the loop keeps serving)."""
    with state.sessions.begin() as session:
        return work(session)


# --- SMS ----------------------------------------------------------------------


def answer_sms(
    session: Session, *, sender: str, body: str, now: datetime, message_id: str | None = None
) -> str:
    """Act on one SMS reply and return the text to send back; does not commit.

    With the provider's `message_id` (MessageSid), a reply handled before — a
    signed request replayed — is answered as it was and changes nothing.
    """
    if message_id:
        handled = session.scalar(
            select(InboundMessage).where(InboundMessage.provider_id == message_id[:64])
        )
        if handled is not None:
            return handled.answer
        answer = _answer_sms(session, sender=sender, body=body, now=now)
        session.add(
            InboundMessage(
                provider_id=message_id[:64], sender=sender[:32], received_at=now, answer=answer
            )
        )
        return answer
    return _answer_sms(session, sender=sender, body=body, now=now)


def _answer_sms(session: Session, *, sender: str, body: str, now: datetime) -> str:
    people = _people_with_phone(session, sender)
    if not people:
        _refused(session, now, sender, body, "unknown_sender")
        return "本号码未登记为预警接收人，无法确认预警。如有险情请直接拨打县自然资源局值班电话。"
    reply = parse_ack_reply(body)
    if reply is None:
        _refused(session, now, sender, body, "unparseable", people[0].id)
        shown = body.strip()[:20]
        return f"未能识别您的回复“{shown}”。{HELP_REPLY}"

    if reply.code is not None:
        alert = find_open_alert_by_code(session, reply.code)
        if alert is None:
            _refused(session, now, sender, body, "no_open_alert_with_code", people[0].id)
            known = session.scalar(select(Alert).where(Alert.code == reply.code))
            if known is not None:
                return f"{no_ack_needed(known.code, known.state)}。"
            return f"未找到编码为{reply.code}的预警，请核对短信中的编码。{HELP_REPLY}"
        person = _recipient_of(session, alert, people)
    else:
        latest = [
            (a, p) for p in people if (a := latest_open_alert_for(session, p.id, now)) is not None
        ]
        if not latest:
            _refused(session, now, sender, body, "nothing_to_acknowledge", people[0].id)
            return "您目前没有待确认的预警。"
        alert, person = max(latest, key=lambda ap: (ap[0].opened_at, ap[0].id))

    outcome = acknowledge(
        session, alert=alert, person_id=person.id, actor=person.id, method="sms", note=None, at=now
    )
    what = _describe(session, alert)
    if not outcome.accepted:
        if outcome.reason in (NOT_YOURS, EVENT_FOR_BUREAU):  # evidence of who tried what
            _refused(session, now, sender, body, "not_concerned", person.id)
        return f"未能确认预警{alert.code}（{what}）：{outcome.reason}。"
    if alert.kind == AlertKind.EVENT:
        # the bureau has it; each zone's own people still acknowledge their zone
        return f"预警事件{alert.code}（{what}）{outcome.reason}，各隐患点仍由其责任人确认。谢谢！"
    return f"预警{alert.code}（{what}）{outcome.reason}。谢谢！"


def _people_with_phone(session: Session, phone: str) -> list[Person]:
    number = re.sub(r"[\s\-()]", "", phone)
    if not number:
        return []
    return list(
        session.scalars(
            select(Person)
            .where(Person.phone == number, Person.active.is_(True))
            .order_by(Person.id)
        )
    )


def _recipient_of(session: Session, alert: Alert, people: list[Person]) -> Person:
    """Of several people sharing one phone, the one this alert was sent to."""
    if len(people) > 1:
        told = set(
            session.scalars(select(Notification.person_id).where(Notification.alert_id == alert.id))
        )
        for person in people:
            if person.id in told:
                return person
    return people[0]


def _refused(
    session: Session,
    now: datetime,
    sender: str,
    body: str,
    reason: str,
    person_id: str | None = None,
) -> None:
    audit.record(
        session,
        at=now,
        actor=person_id or f"phone:{sender[:32]}",
        action="ack.refused",
        subject=f"person:{person_id}" if person_id else f"phone:{sender[:32]}",
        data={"method": "sms", "from": sender, "body": body[:160], "reason": reason},
    )


# --- voice --------------------------------------------------------------------


def answer_keypress(
    session: Session,
    *,
    notification: str,
    digits: str,
    again: str,
    now: datetime,
    voice: str,
    language: str,
) -> VoiceResponse:
    """Act on a keypress during the call that delivered `notification`; TwiML to play next.

    1 acknowledges for the person called. Any other key (or none) plays the
    message again inside a new <Gather> that posts back to `again`.
    """
    call = VoiceResponse()
    notification_id = parse_id(notification)
    note = session.get(Notification, notification_id) if notification_id is not None else None
    if note is None or note.alert_id is None or note.person_id is None:
        call.say("未找到对应的预警信息，请联系县自然资源局值班室。", voice=voice, language=language)
        call.hangup()
        return call
    if digits == "1":
        outcome = acknowledge(
            session,
            alert=session.get_one(Alert, note.alert_id),
            person_id=note.person_id,
            actor=note.person_id,
            method="voice",
            note=None,
            at=now,
        )
        call.say(_voice_outcome(outcome), voice=voice, language=language)
        call.hangup()
        return call
    heard = f"您按的是{digits}。" if digits else ""
    call.say(f"{heard}下面重复预警内容。", voice=voice, language=language)
    gather = call.gather(action=again, method="POST", num_digits=1, timeout=8)
    gather.say(f"{_LINK_TAIL.sub('', note.body)}。确认收到请按1。", voice=voice, language=language)
    call.say("没有收到按键，再见。", voice=voice, language=language)
    return call


def _voice_outcome(outcome: AckOutcome) -> str:
    if not outcome.accepted:
        return f"未能确认：{outcome.reason}。"
    if outcome.reason == "已确认":
        return "已确认，谢谢"
    return f"{outcome.reason}。谢谢"


# --- wording shared by the three ways -------------------------------------------


def _describe(session: Session, alert: Alert) -> str:
    """'寒潮黄色预警，穆村镇冯家沟村黄土滑坡' — hazard, level, zone; for an event
    '寒潮橙色预警，40处隐患点'."""
    zone = session.get(Zone, alert.zone_id) if alert.zone_id else None
    level = level_label(alert.level)
    hazard = alert.title or alert.hazard
    if alert.kind == AlertKind.EVENT:
        return f"{hazard}{level}预警，{_event_scope(session, alert)}"
    where = f"，{zone.name}" if zone is not None else ""
    return f"{hazard}{level}预警{where}"


# --- the ack link pages -----------------------------------------------------------


def _alert_view(session: Session, claim: AckClaim, timezone: str) -> dict[str, Any] | None:
    alert = session.get(Alert, claim.alert_id)
    if alert is None:
        return None
    tz = ZoneInfo(timezone)
    zone = session.get(Zone, alert.zone_id) if alert.zone_id else None
    person = session.get(Person, claim.person_id)

    def local(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "—"

    return {
        "code": alert.code,
        "hazard": alert.title or alert.hazard,
        "level": alert.level,
        "level_zh": level_label(alert.level),
        "zone": (
            zone.name
            if zone is not None
            else f"预警事件：{_event_scope(session, alert)}"
            if alert.kind == AlertKind.EVENT
            else "（系统告警）"
        ),
        "place": " ".join(x for x in (zone.township, zone.village) if x) if zone else "",
        "onset": local(alert.onset),
        "until": local(alert.until),
        "opened_at": local(alert.opened_at),
        "state": alert.state,
        "state_zh": alert_state_label(alert.state),
        "open": alert.state in OPEN_ALERT_STATES,
        "acknowledged_at": local(alert.acknowledged_at) if alert.acknowledged_at else None,
        "evidence": {str(k): _plain(v) for k, v in (alert.evidence or {}).items()},
        "person": person.name if person is not None else claim.person_id,
        "expires_at": local(claim.expires_at),
        "note_max": NOTE_MAX_CHARS,
    }


def _event_scope(session: Session, event: Alert) -> str:
    """'40处隐患点': the event's open zones."""
    count = session.scalar(
        select(func.count(Alert.id)).where(
            Alert.event_id == event.id, Alert.state.in_(OPEN_ALERT_STATES)
        )
    )
    return f"{count or 0}处隐患点"


def _plain(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _link_refused(pages: Environment, error: LinkError) -> HTMLResponse:
    status = 410 if isinstance(error, LinkExpired) else 403
    title = "链接已过期" if status == 410 else "链接无效"
    return _page(pages, status, title=title, message=str(error))


def _page(pages: Environment, status: int, **values: Any) -> HTMLResponse:
    values.setdefault("view", None)
    values.setdefault("message", None)
    values.setdefault("done", False)
    values.setdefault("ok", False)
    body = pages.get_template("ack_link.html").render(**values)
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            # the token is in the URL: keep it out of caches, referrers and indexes
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex, nofollow",
            # never inside another site's frame: a framed confirm button is a click-jack
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                "frame-ancestors 'none'"
            ),
            "X-Frame-Options": "DENY",
        },
    )

"""What Microsoft Graph's answers to ``sendMail`` mean for a queued message, in one sentence each.

Graph answers in HTTP, the relay thinks in SMTP: the forwarder delivers on 2xx, defers on 4xx and gives
up on 5xx, and explains replies by their enhanced status code. So each Graph answer becomes the SMTP
reply that means the same thing to the forwarder, with Graph's own status, error code and message kept in
the text, and the explanation a person needs written into it:

- ``202 Accepted``: delivered (``250``). Any other 2xx is not the documented answer: nothing says the
  message went, and retrying could send it twice, so it is kept as dead (``554``) for a person to look at.
- ``429`` and ``5xx``: deferred (``451``), after ``Retry-After`` when Graph gives one.
- ``400`` (MIME content Graph cannot read, no valid recipient...), ``413`` and ``ErrorSendAsDenied``:
  the message's own fault, dead with an explanation. (sendMail's 413 does not get here: the session sends
  such a message the large way instead.)
- ``403 ErrorAccessDenied`` and ``404``: the app may not send as the relay's mailbox, or Graph does not
  know that mailbox. Every message would fail alike and none is at fault, so these are failures of the
  session (``AuthFailed``, ``UpstreamRefused``): the messages stay queued while an admin fixes the
  permission, as they do for a wrong SMTP password.

A large message goes in steps (``graph_large``: draft, attachments, upload, send), and ``judge_step`` reads
an answer knowing the step: creating a draft or an attachment needs ``Mail.ReadWrite``, so a 403 there
keeps the message queued with that explained while small messages still go; an upload URL that answers
401, 403 or 404 has expired; a 404 after the draft exists means the draft is gone; and
``ErrorMessageSizeExceeded`` is the mailbox's message size limit (35 MB unless an admin raised it).

Graph's error bodies look like ``{"error": {"code": "ErrorAccessDenied", "message": "Access is denied.
Check credentials and try again."}}``; the texts vary, so only the codes are matched.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from dataclasses import dataclass
from typing import Literal

import httpx

#: The documented request limit of Graph writes (sendMail included): 4 MB for the base64 body.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: A Retry-After longer than this is taken as this: a wrong or hostile header must not park mail for days.
MAX_RETRY_AFTER = 3600.0

Outcome = Literal["delivered", "retry", "dead", "auth", "refused"]
Step = Literal["draft", "attach", "upload", "send"]
"""A step of a large message: create the draft, add an attachment, upload its bytes, send the draft."""


@dataclass(frozen=True)
class GraphError:
    """Graph's answer in parts: HTTP status, ``error.code`` and ``error.message`` (empty when absent)."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        reason = httpx.codes.get_reason_phrase(self.status)
        parts = [f"HTTP {self.status}{' ' + reason if reason else ''}"]
        if self.code:
            parts.append(self.code)
        text = f"{' '.join(parts)}: {self.message}" if self.message else " ".join(parts)
        return text.rstrip(".")


@dataclass(frozen=True)
class Verdict:
    """What to do with the message: ``outcome``, and the SMTP-style ``code`` and ``reply`` to record."""

    outcome: Outcome
    code: int
    reply: str


def read_error(response: httpx.Response) -> GraphError:
    """Graph's error body, tolerating anything else (an HTML page from a proxy, an empty body)."""
    code = message = ""
    try:
        body = json.loads(response.content.decode("utf-8", "replace")) if response.content else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        message = " ".join(str(error.get("message") or "").split())
    return GraphError(response.status_code, code[:100], message[:300])


def retry_after(response: httpx.Response, now: float) -> float | None:
    """Seconds the ``Retry-After`` header asks for (a number or an HTTP date), capped; None when absent."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _wait(seconds: float | None) -> str:
    if seconds is None:
        return "the relay retries by itself"
    return f"Graph asked to wait {seconds:g} seconds before the next try"


def judge(error: GraphError, mailbox: str, wait: float | None = None) -> Verdict:
    """The verdict on a Graph answer other than ``202`` and ``401`` (those the session handles itself)."""
    status, code = error.status, error.code.lower()
    if status == 202:
        return Verdict("delivered", 250, "250 2.0.0 Graph accepted the message (HTTP 202 Accepted)")
    if 200 <= status < 300:
        return Verdict(
            "dead",
            554,
            f"554 5.0.0 Graph answered {error} instead of 202 Accepted, so the message may not have been "
            "sent; the relay does not resend it by itself, so that nobody gets it twice",
        )
    if status == 429:
        return Verdict(
            "retry",
            451,
            f"451 4.3.2 Graph is throttling the mailbox {mailbox} ({error}); the message stays queued and "
            f"{_wait(wait)}",
        )
    if status >= 500:
        return Verdict(
            "retry",
            451,
            f"451 4.3.0 Graph had a problem of its own ({error}); the message stays queued and {_wait(wait)}",
        )
    if status == 413:
        return Verdict(
            "dead",
            552,
            f"552 5.3.4 The message is too large for Graph ({error}): one request takes at most 4 MB",
        )
    if status == 403 and code == "errorsendasdenied":
        return Verdict(
            "dead",
            550,
            f"550 5.7.60 Graph refused the message's From address ({error}): the mailbox {mailbox} may not "
            "send as it; let the relay rewrite the sender (--sender) or grant Send As",
        )
    if status == 403:
        return Verdict(
            "auth",
            403,
            f"Graph refused to send as {mailbox} ({error}): the app registration needs the Mail.Send "
            "application permission with admin consent, and no application access policy or RBAC for "
            "Applications scope may leave this mailbox out",
        )
    if status == 404:
        return Verdict(
            "refused",
            404,
            f"Graph does not know the mailbox {mailbox} ({error}): check --user, and that it is a "
            "licensed Exchange Online mailbox of the app's tenant",
        )
    if status == 400 and code.startswith("errormimecontent"):
        return Verdict(
            "dead",
            554,
            f"554 5.6.0 Graph cannot read the message as MIME ({error}); the device sent a message Graph "
            "does not accept, so it cannot be delivered through Graph",
        )
    if status == 400 and code in ("errorinvalidrecipients", "errorinvalidrecipient"):
        return Verdict(
            "dead",
            550,
            f"550 5.1.3 Graph found no valid recipient in the message ({error}); check the recipient "
            "addresses the device sends to",
        )
    return Verdict("dead", 554, f"554 5.0.0 Graph refused the message ({error})")


def judge_step(step: Step, error: GraphError, mailbox: str, wait: float | None = None) -> Verdict:
    """The verdict on an answer to one step of a large message (see the module's text), else ``judge``'s."""
    status, code = error.status, error.code.lower()
    if code == "errormessagesizeexceeded":
        return Verdict(
            "dead",
            552,
            f"552 5.3.4 The message is larger than {mailbox} may send ({error}): Exchange Online allows "
            "35 MB unless an admin raised the mailbox's limit, up to 150 MB",
        )
    if step == "upload" and status == 416:  # e.g. a range resent after a 5xx that Graph had taken after all
        return Verdict(
            "retry",
            451,
            f"451 4.4.7 Graph's upload session did not take a range of an attachment ({error}); the message "
            f"stays queued to go again from a new draft, and {_wait(wait)}",
        )
    if step == "upload" and status in (401, 403, 404):
        return Verdict(
            "retry",
            451,
            f"451 4.4.7 Graph's upload session for an attachment ended before the upload did ({error}); the "
            f"message stays queued and {_wait(wait)}",
        )
    if step in ("draft", "attach") and status == 403 and code != "errorsendasdenied":
        return Verdict(
            "retry",
            451,
            f"451 4.7.0 Graph refused to build the message as a draft in {mailbox} ({error}): messages over "
            "about 3 MB are sent from a draft, which needs the Mail.ReadWrite permission (with admin "
            f"consent) besides Mail.Send; the message stays queued and {_wait(wait)}",
        )
    if step != "draft" and status == 404:
        return Verdict(
            "retry",
            451,
            f"451 4.3.0 The draft of the message went missing in {mailbox} before it was sent ({error}); the "
            f"message stays queued and {_wait(wait)}",
        )
    return judge(error, mailbox, wait)

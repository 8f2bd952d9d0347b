"""Which way a device should send through Microsoft 365, from what it can do: the wizard's advice.

Pure logic over ``Capabilities`` and the facts in ``m365``: no Qt, no network. ``recommend`` picks one
method with the reasons and warnings in plain words; ``compare`` lays the methods side by side;
``problems`` and ``risks`` judge a combination the admin chose instead.

The rules, first match wins. "Yes" means the answer is True; an unknown answer (None, shown as ?) never
counts as a yes, so it falls to the choice that works either way, and ``Recommendation.checks`` says
what to find out. "Signs in" is yes when the device can use a user name and password *or* OAuth.

====  ========================  ======  ========  =========  ===========  ========  =====  ==================
rule  TLS 1.2 + signs in + 587  OAuth   external  static IP  method       auth      relay  id
====  ========================  ======  ========  =========  ===========  ========  =====  ==================
1     all yes                   yes     any       any        smtp-auth    oauth     no     smtp-auth-oauth
2     all yes                   no, ?   any       any        smtp-auth    password  no     smtp-auth-password
3     not all yes               any     yes       yes        connector    none      no     connector
4     not all yes               any     yes       no, ?      smtp-auth    password  yes    relay
5     not all yes               any     no        any        direct-send  none      no     direct-send
====  ========================  ======  ========  =========  ===========  ========  =====  ==================

1. Microsoft's recommended route; OAuth outlasts Basic authentication. Warns that SMTP AUTH must be
   enabled for the mailbox (even with OAuth, reportedly).
2. Works today; warns that Basic authentication is off by default from ``m365.BASIC_AUTH_OFF_BY_DEFAULT``
   and names the lasting alternative: a connector with a static IP, else the local relay.
3. The connector matches the office's static IP, so the device needs neither TLS 1.2 nor a sign-in.
   Warns about outbound port 25 and SPF.
4. The relay on this computer takes the device's mail on the LAN and signs in for it with OAuth.
5. Direct Send needs nothing from the device; warns about RejectDirectSend (and names the connector or
   the relay as the alternative), outbound port 25 and SPF.

Extra notes where they help: a TLS 1.0/1.1 device that signs in can use Microsoft's legacy endpoint as a
stopgap; a device with TLS 1.2 and a sign-in but only port 25 can also submit to smtp.office365.com on
port 25 where outbound 25 is open; applications hear where High Volume Email fits (internal only).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import date
from typing import TYPE_CHECKING

from relaywizard.core import m365
from relaywizard.core.plan import AuthChoice, Capabilities, UseCase

if TYPE_CHECKING:  # core sits below diagnostics: only the annotations name its types
    from relaywizard.diagnostics.model import Method

#: The methods the wizard sets up and compares (HVE and Graph are mentioned, not offered).
ADVISED_METHODS: tuple[Method, ...] = ("smtp-auth", "direct-send", "connector")

AUTH_LABELS: dict[AuthChoice, str] = {
    "oauth": "OAuth 2.0",
    "password": "a password",
    "none": "no sign-in",
}


@dataclass
class Recommendation:
    """The advised method, how it signs in, whether the local relay sits in front, and why."""

    method: Method
    auth: AuthChoice
    local_relay: bool
    rule: str
    """Which row of the rules table matched (see the module docstring)."""
    reasons: list[str] = field(default_factory=list)
    """Why this method, in plain words, one sentence each."""
    warnings: list[str] = field(default_factory=list)
    """What can go wrong or needs doing, one sentence each."""
    checks: list[str] = field(default_factory=list)
    """For answers given as unknown: what to find out, and what a yes would change."""

    @property
    def headline(self) -> str:
        return describe(self.method, self.auth, self.local_relay)


@dataclass(frozen=True)
class MethodCard:
    """One sending method, as the comparison shows it."""

    method: Method
    name: str
    endpoint: str
    recipients: str
    sender_rule: str
    limits: str
    needs: tuple[str, ...]
    tls: str
    auth: str


# -- the decision ------------------------------------------------------------------------------------------


def _decide(caps: Capabilities) -> tuple[Method, AuthChoice, bool, str]:
    signs_in = caps.can_authenticate is True or caps.oauth is True
    if caps.tls12 is True and signs_in and caps.port_587 is True:
        if caps.oauth is True:
            return "smtp-auth", "oauth", False, "smtp-auth-oauth"
        return "smtp-auth", "password", False, "smtp-auth-password"
    if caps.external_recipients:
        if caps.static_ip is True:
            return "connector", "none", False, "connector"
        # The relay signs in with a password until relaywizard's OAuth support lands (see the warning).
        return "smtp-auth", "password", True, "relay"
    return "direct-send", "none", False, "direct-send"


def describe(method: Method, auth: AuthChoice, local_relay: bool) -> str:
    """A one-line name for a choice: ``SMTP AUTH with OAuth 2.0``, ``Direct Send``, ..."""
    if method == "smtp-auth":
        name = f"SMTP AUTH with {AUTH_LABELS[auth]}" if auth != "none" else "SMTP AUTH"
    elif method == "direct-send":
        name = "Direct Send"
    else:
        name = "Connector relay"
    if local_relay:
        return f"The local relay on this computer, sending by {name}"
    return name


#: For each answer that can be unknown: what to find out, and how the answer "yes" is introduced.
_HOW_TO_CHECK: dict[str, tuple[str, str]] = {
    "tls12": (
        "Check whether the device supports TLS 1.2 (its SMTP or security settings, or the firmware's "
        "release notes).",
        "If it does",
    ),
    "can_authenticate": (
        "Check whether the device's mail settings have a user name and password for the SMTP server.",
        "If they do",
    ),
    "oauth": (
        "Check whether the device or application offers OAuth 2.0 (often called modern authentication "
        "or Microsoft 365 sign-in).",
        "If it does",
    ),
    "static_ip": (
        "Ask the internet provider whether the office's public IP address is static and not shared with "
        "other customers.",
        "If it is",
    ),
    "port_587": ("Check whether the device lets you set the SMTP port to 587.", "If it does"),
}


def _checks(caps: Capabilities, rule: str) -> list[str]:
    """For each unknown answer that can change the advice: what to check, and what a yes would give."""
    unknown = [item.name for item in fields(caps) if getattr(caps, item.name) is None]
    checks: list[str] = []
    for name in unknown:
        method, auth, relay, alone = _decide(replace(caps, **{name: True}))
        if alone != rule:
            how, if_yes = _HOW_TO_CHECK[name]
            checks.append(f"{how} {if_yes}: {describe(method, auth, relay)}.")
        elif _matters_with_others(caps, name, [other for other in unknown if other != name]):
            checks.append(_HOW_TO_CHECK[name][0])
    method, auth, relay, all_yes = _decide(replace(caps, **dict.fromkeys(unknown, True)))
    if len(checks) > 1 and all_yes != rule:
        checks.append(f"If all of these are yes: {describe(method, auth, relay)}.")
    return checks


def _matters_with_others(caps: Capabilities, name: str, others: list[str]) -> bool:
    """True when some answers to the other unknowns make this one change the advice."""
    for mask in range(1 << len(others)):
        given = {other: bool(mask >> bit & 1) for bit, other in enumerate(others)}
        yes = _decide(replace(caps, **given, **{name: True}))[3]
        no = _decide(replace(caps, **given, **{name: False}))[3]
        if yes != no:
            return True
    return False


def recommend(capabilities: Capabilities, use_case: UseCase, *, today: date | None = None) -> Recommendation:
    """The method to set up for a device with these capabilities, with reasons, warnings and checks.

    ``today`` phrases the Basic-auth timeline (before or after ``m365.BASIC_AUTH_OFF_BY_DEFAULT``).
    """
    caps = capabilities
    method, auth, local_relay, rule = _decide(caps)
    advice = Recommendation(method=method, auth=auth, local_relay=local_relay, rule=rule)
    lasting = _lasting_alternative(caps)
    if rule == "smtp-auth-oauth":
        advice.reasons += [
            "The device can sign in to Microsoft 365 itself with OAuth 2.0 over TLS 1.2 on port 587: "
            "Microsoft's recommended way, with no extra computer in between.",
            "OAuth is not affected by the retirement of Basic authentication.",
            *_smtp_auth_traits(),
        ]
        advice.warnings.append(_smtp_auth_must_be_enabled("The mailbox it signs in as", oauth=True))
    elif rule == "smtp-auth-password":
        advice.reasons += [
            "The device can sign in to Microsoft 365 itself with a user name and password over TLS 1.2 "
            "on port 587: it works today with no extra computer in between.",
            *_smtp_auth_traits(),
        ]
        advice.warnings += [
            f"{basic_auth_warning(today)} The lasting alternative: {lasting}.",
            _smtp_auth_must_be_enabled("The mailbox it signs in as", oauth=False),
        ]
    elif rule == "connector":
        advice.reasons += [
            _why_not_direct(caps),
            "The office has a static public IP address, so an inbound connector can recognise its mail: "
            "the device needs no TLS 1.2 and no sign-in.",
            *_relay_traits(m365.CONNECTOR),
        ]
        advice.warnings += _port_25_warnings()
        if caps.tls12 is False:
            advice.warnings.append(
                "Without TLS the mail crosses the internet unencrypted: if the device offers STARTTLS at "
                "all, turn it on."
            )
    elif rule == "relay":
        advice.reasons += [
            _why_not_direct(caps),
            "The relay on this computer takes the device's mail on the office network (no TLS 1.2 or "
            "sign-in needed from the device) and signs in to Microsoft 365 for it with OAuth 2.0, which "
            "outlasts Basic authentication.",
            "It reaches people inside and outside the organisation, and keeps a queue and a delivery log.",
        ]
        if caps.static_ip is False:
            advice.reasons.append(
                "A connector relay would need a static public IP address, which the office does not have."
            )
        advice.warnings += [
            "This computer has to stay on and reachable from the device: while it is off, the device "
            "cannot send.",
            "The relay signs in with the mailbox's password for now: "
            + basic_auth_warning(today)
            + " relaywizard's relay moves to OAuth 2.0 (an app registration in Microsoft Entra ID with "
            "an admin's consent) when its OAuth support arrives.",
            _smtp_auth_must_be_enabled("The mailbox the relay signs in as", oauth=False),
        ]
    else:  # direct-send
        advice.reasons += [
            _why_not_direct(caps),
            "It only has to reach mailboxes inside the organisation, which Direct Send delivers to "
            "without any sign-in.",
            *_relay_traits(m365.DIRECT_SEND),
        ]
        advice.warnings += [
            "Direct Send reaches only mailboxes of your own organisation: mail to anyone outside is "
            "rejected.",
            "If an admin turns on RejectDirectSend (Set-OrganizationConfig -RejectDirectSend $true), "
            f"Microsoft rejects this mail with “{m365.DIRECT_SEND_REJECTION}”; the alternative then: "
            f"{lasting}.",
            *_port_25_warnings(),
        ]
    if rule not in ("smtp-auth-oauth", "smtp-auth-password"):
        advice.warnings += _near_misses(caps)
    if use_case is UseCase.APPLICATION:
        advice.warnings.append(_hve_note(caps))
    advice.checks = _checks(caps, rule)
    return advice


def _hve_note(caps: Capabilities) -> str:
    """Applications ask about High Volume Email: say where it fits, without offering it."""
    if caps.external_recipients:
        return f"{m365.HVE.name} cannot help here: it delivers only to recipients inside the organisation."
    return (
        f"For bulk internal mail, {m365.HVE.name} is another route (internal recipients only, its own "
        "account and billing); relaywizard does not set it up."
    )


def _lasting_alternative(caps: Capabilities) -> str:
    if caps.static_ip is True:
        return "a connector relay matching the office's static IP address"
    return "the local relay on this computer, which signs in with OAuth 2.0 for the device"


def _smtp_auth_traits() -> list[str]:
    method = m365.SMTP_AUTH
    return [
        "It reaches people inside and outside the organisation.",
        f"The sender must be {method.sender_rule}.",
        f"Limits: {method.limits_detail}.",
    ]


def _relay_traits(method: m365.SendingMethod) -> list[str]:
    return [f"The sender can be {method.sender_rule}.", f"Limits: {method.limits_detail}."]


def _smtp_auth_must_be_enabled(mailbox: str, *, oauth: bool) -> str:
    if oauth and m365.OAUTH_NEEDS_SMTP_AUTH_ENABLED:
        mailbox += " (even with OAuth)"
    return (
        f"{mailbox} needs SMTP AUTH enabled — it is off by default in tenants created since "
        f"{m365.SMTP_AUTH_OFF_BY_DEFAULT_FOR_TENANTS_SINCE}: {m365.PS_ENABLE_SMTP_AUTH_MAILBOX}"
    )


def _port_25_warnings() -> list[str]:
    return [
        f"The device sends to your domain's MX endpoint on port {m365.MX_PORT}: many internet providers "
        "block outgoing port 25 (the tests check it from here).",
        "Add the office's public IP address to the domain's SPF record, so receivers trust the mail.",
    ]


def _why_not_direct(caps: Capabilities) -> str:
    """Why the device cannot simply sign in to smtp.office365.com, from the answers."""
    gaps = []
    if caps.tls12 is False:
        gaps.append("the device has no TLS 1.2")
    elif caps.tls12 is None:
        gaps.append("its TLS 1.2 support is not known")
    if not (caps.can_authenticate is True or caps.oauth is True):
        known = caps.can_authenticate is False and caps.oauth is False
        gaps.append("it cannot sign in" if known else "whether it can sign in is not known")
    if caps.port_587 is False:
        gaps.append("it can only use port 25")
    elif caps.port_587 is None:
        gaps.append("whether it can use port 587 is not known")
    return (
        f"Signing in to {m365.SMTP_AUTH_ENDPOINT.host} directly needs TLS 1.2, a sign-in and port 587, "
        f"but {_join(gaps)}."
    )


def _near_misses(caps: Capabilities) -> list[str]:
    """Stopgaps for a device that almost qualifies for SMTP AUTH."""
    signs_in = caps.can_authenticate is True or caps.oauth is True
    notes = []
    if caps.tls12 is False and signs_in:
        notes.append(
            f"A stopgap only: {m365.SMTP_LEGACY_TLS_ENDPOINT.host} still accepts TLS 1.0 and 1.1 if an admin "
            f"runs {m365.PS_ALLOW_LEGACY_TLS}; Microsoft discourages it."
        )
    if caps.tls12 is True and signs_in and caps.port_587 is False:
        notes.append(
            f"Microsoft's {m365.SMTP_AUTH_ENDPOINT.host} also accepts SMTP AUTH on port "
            f"{m365.SMTP_AUTH_ALTERNATIVE_PORT}: where outgoing port 25 is open, the device could sign in "
            "there directly (the tests show whether it is open)."
        )
    return notes


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def basic_auth_warning(today: date | None = None) -> str:
    """Basic authentication's retirement for SMTP AUTH, phrased for ``today``."""
    when = m365.BASIC_AUTH_OFF_BY_DEFAULT
    month = f"the end of {when:%B %Y}"
    removal = f"Microsoft plans to remove it for good in {m365.BASIC_AUTH_FINAL_REMOVAL_YEAR}."
    if (today or date.today()) < when:
        return (
            f"Basic authentication (a password) for SMTP AUTH is switched off by default for existing "
            f"tenants from {month} (an admin can turn it back on), and new tenants never have it; "
            f"{removal}"
        )
    return (
        f"Since {month}, Basic authentication (a password) for SMTP AUTH is off by default for existing "
        f"tenants: it works only where an admin turned it back on, and never in new tenants; {removal}"
    )


# -- the methods side by side ------------------------------------------------------------------------------


def compare(methods: tuple[Method, ...] = ADVISED_METHODS) -> list[MethodCard]:
    """The methods side by side: recipients, sender rule, limits, needs, TLS and sign-in."""
    cards = []
    for method_id in methods:
        method = m365.SENDING_METHODS[method_id]
        host = "Your domain's MX endpoint" if method.host == m365.MX_HOST_PLACEHOLDER else method.host
        cards.append(
            MethodCard(
                method=method_id,
                name=method.name,
                endpoint=f"{host}, port {method.port}",
                recipients=(
                    "Inside and outside the organisation"
                    if method.external_recipients
                    else "Only mailboxes of your organisation"
                ),
                sender_rule=_capitalise(method.sender_rule),
                limits=_capitalise(method.limits_detail),
                needs=tuple(_capitalise(need) for need in method.needs),
                tls=_capitalise(method.tls_detail),
                auth=_capitalise(method.auth),
            )
        )
    return cards


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- a choice the admin made instead ----------------------------------------------------------------------


def problems(capabilities: Capabilities, method: Method, auth: AuthChoice, local_relay: bool) -> list[str]:
    """Why this choice cannot work for this device, as far as the answers tell (empty: it can).

    An unknown answer counts as a problem: the choice relies on something nobody has confirmed.
    """
    caps = capabilities
    found: list[str] = []
    if method == "smtp-auth" and auth == "none":
        found.append("SMTP AUTH needs a sign-in: choose OAuth 2.0 or a password.")
    if method != "smtp-auth" and auth != "none":
        found.append(f"{describe(method, 'none', False)} does not sign in: authentication should be none.")
    if method == "direct-send" and caps.external_recipients:
        found.append(
            "Direct Send reaches only mailboxes of your own organisation, but this device must mail people "
            "outside it."
        )
    if method == "connector" and caps.static_ip is not True:
        found.append(
            "A connector recognises the office by a static public IP address (or a TLS certificate name); "
            "without one, Microsoft refuses to relay the mail."
        )
    if method == "smtp-auth" and not local_relay:
        if caps.tls12 is not True:
            found.append(f"Signing in to {m365.SMTP_AUTH_ENDPOINT.host} needs TLS 1.2 from the device.")
        if auth == "oauth" and caps.oauth is not True:
            found.append("The device would have to sign in with OAuth 2.0, which it is not known to offer.")
        if auth == "password" and caps.can_authenticate is not True:
            found.append("The device would have to sign in with a user name and password.")
        if caps.port_587 is not True:
            found.append(
                f"The device is not known to use port 587; port {m365.SMTP_AUTH_ALTERNATIVE_PORT} works "
                "only where outgoing port 25 is open."
            )
    return found


def risks(method: Method, auth: AuthChoice, local_relay: bool, *, today: date | None = None) -> list[str]:
    """What can stop this choice working later, or where it commonly trips (empty: nothing known)."""
    found: list[str] = []
    if method != "smtp-auth" and not local_relay:
        found.append(
            f"The device must reach your domain's MX endpoint on port {m365.MX_PORT}, which many internet "
            "providers block."
        )
    if method == "direct-send":
        found.append(
            f"If an admin turns on RejectDirectSend, this mail is rejected ({m365.DIRECT_SEND_REJECTION})."
        )
    if auth == "password":
        found.append(basic_auth_warning(today))
    if local_relay:
        found.append("This computer has to stay on and reachable from the device.")
    return found

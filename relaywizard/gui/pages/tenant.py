"""Tenant: the domain, the mailbox or sender, and for a connector how Microsoft 365 recognises the office."""

from __future__ import annotations

import ipaddress

from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from relaywizard.core import m365, validate
from relaywizard.core.plan import UseCase
from relaywizard.diagnostics.model import METHODS, Method
from relaywizard.gui.widgets import ValidatedLineEdit
from relaywizard.gui.wizard import PlanPage

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def connector_ip(text: str) -> str:
    """The office's public IPv4 address, as an inbound connector's ``-SenderIPAddresses`` accepts it."""
    value = validate.ip_address(text)
    if ipaddress.ip_address(value).version != 4:
        raise validate.InvalidValue(
            text,
            "an IPv4 address",
            message=(
                f"{validate.show(text)} is an IPv6 address; an inbound connector matches IPv4 addresses only"
            ),
        )
    return value


_LAN = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def public_ip_warning(value: str) -> str | None:
    """Why ``value`` is probably not the address Microsoft 365 sees the office's mail come from."""
    address = ipaddress.ip_address(value)
    if any(address in network for network in _LAN if network.version == address.version):
        return (
            f"{value} is a private (LAN) address: Microsoft 365 sees the office's public address instead. "
            "Look it up from the office, for example on the router's status page."
        )
    if address.version == 4 and address in _CGNAT:
        return (
            f"{value} is a carrier-grade NAT address, shared with other customers of the provider. Ask the "
            "provider for a static public IP, or match the connector by certificate."
        )
    if not address.is_global:
        return (
            f"{value} is reserved for special use, not a public internet address: Microsoft 365 sees the "
            "office's public address instead."
        )
    return None


def certificate_name(text: str) -> str:
    """The name on the device's TLS certificate (``smtp.contoso.com`` or ``*.contoso.com``)."""
    stripped = text.strip()
    if stripped.startswith("*."):
        return "*." + validate.domain(stripped[2:])
    return validate.domain(stripped)


class TenantPage(PlanPage):
    help_text = (
        "<b>Domain</b>: the domain your mail is sent from, as it appears in the Microsoft 365 admin center "
        "under Settings → Domains (for example <i>contoso.com</i>). The tests look up its DNS records."
        "<br><br><b>Mailbox</b>: with SMTP AUTH the device signs in as this mailbox; it needs a licence "
        "and SMTP AUTH allowed. With Direct Send or a connector nobody signs in: it is the address the "
        "device sends from, and it must be in one of your domains."
        "<br><br><b>Sender (From)</b>: with SMTP AUTH the device may only send as the mailbox itself, or as "
        "an address the mailbox has <i>Send As</i> permission on (Exchange admin center → Recipients → "
        "Mailboxes → the address → Delegation). Anything else is refused with <i>550 5.7.60 Client does "
        "not have permissions to send as this sender</i>."
        "<br><br><b>Connector</b>: an inbound connector recognises the office by its static public IPv4 "
        "address (not a LAN address such as 192.168.x.x, and not one shared by the provider's carrier-grade "
        "NAT), or by the name on the TLS certificate the device presents."
    )

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Your Microsoft 365 domain")
        layout = QVBoxLayout(self)
        layout.setSpacing(12)
        self.form = QFormLayout()
        self.form.setVerticalSpacing(14)
        self.form.setHorizontalSpacing(16)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addLayout(self.form)
        layout.addStretch(1)

        # Validating existing settings skips the capabilities page: the method is chosen here instead.
        self.method_box = QComboBox()
        self.method_box.setAccessibleName("Sending method")
        for method in METHODS:
            self.method_box.addItem(m365.SENDING_METHODS[method].name, method)
        self._add_row("Sending &method:", self.method_box)

        self.domain = ValidatedLineEdit(
            validate.domain,
            accessible_name="Domain",
            placeholder="contoso.com",
            hint="The domain your mail is sent from, as added in Microsoft 365.",
        )
        self.domain.setObjectName("domain")
        self._add_row("&Domain:", self.domain)

        self.mailbox = ValidatedLineEdit(validate.email, accessible_name="Mailbox", check=self._mailbox_note)
        self.mailbox.setObjectName("mailbox")
        self.mailbox_label = self._add_row("Mail&box:", self.mailbox)

        self.from_address = ValidatedLineEdit(
            validate.email,
            accessible_name="Sender (From) address",
            optional=True,
            check=self._sender_note,
            hint=(
                "Optional: the From address the device uses. Leave it empty to send as the mailbox; another "
                "address needs Send As permission, or Microsoft 365 refuses the mail (5.7.60)."
            ),
        )
        self.from_address.setObjectName("sender")
        self._add_row("&Sender (From):", self.from_address)

        self.match_ip = QRadioButton("Its static &public IP address")
        self.match_ip.setAccessibleName("Match the connector by the office's public IP address")
        self.match_certificate = QRadioButton("The name on the device's &TLS certificate")
        self.match_certificate.setAccessibleName("Match the connector by the certificate name")
        self.match_group = QButtonGroup(self)
        self.match_group.addButton(self.match_ip)
        self.match_group.addButton(self.match_certificate)
        self.match_ip.setChecked(True)
        matches = QWidget()
        match_layout = QVBoxLayout(matches)
        match_layout.setContentsMargins(0, 0, 0, 0)
        match_layout.setSpacing(6)
        match_layout.addWidget(self.match_ip)
        match_layout.addWidget(self.match_certificate)
        self.matches = matches
        self._add_row("Match the office by:", matches)

        self.public_ip = ValidatedLineEdit(
            connector_ip, accessible_name="Office's public IP address", placeholder="203.0.113.10"
        )
        self.public_ip.setObjectName("public_ip")
        self.public_ip_label = self._add_row("Office's public &IP:", self.public_ip)

        self.certificate = ValidatedLineEdit(
            certificate_name,
            accessible_name="Certificate name",
            placeholder="smtp.contoso.com",
            hint="The subject name on the device's TLS certificate; it must be in one of your domains.",
        )
        self.certificate.setObjectName("certificate_name")
        self._add_row("&Certificate name:", self.certificate)

        for field in self._fields():
            field.validityChanged.connect(lambda _valid: self.completeChanged.emit())
        # Connected last: these read the plan, which exists only once the page is in the wizard.
        self.method_box.currentIndexChanged.connect(lambda _index: self._method_changed())
        self.match_ip.toggled.connect(lambda _on: self._method_changed())
        self.domain.edit.textChanged.connect(lambda _text: self._domain_changed())
        self.mailbox.edit.textChanged.connect(lambda _text: self._mailbox_changed())

    def _add_row(self, text: str, field: QWidget) -> QLabel:
        label = QLabel(text)
        label.setBuddy(field.focusProxy() or field)
        self.form.addRow(label, field)
        return label

    def _fields(self) -> list[ValidatedLineEdit]:
        return [self.domain, self.mailbox, self.from_address, self.public_ip, self.certificate]

    # -- the method decides which fields are asked for -------------------------------------------------

    @property
    def method(self) -> Method:
        method: Method = self.method_box.currentData()
        return method

    def _method_changed(self) -> None:
        self._update_rows()
        self.completeChanged.emit()

    def _shown(self) -> list[ValidatedLineEdit]:
        method = self.method
        shown = [self.domain, self.mailbox]
        if method == "smtp-auth":
            shown.append(self.from_address)
        elif method == "direct-send" or self.match_ip.isChecked():
            shown.append(self.public_ip)
        else:
            shown.append(self.certificate)
        return shown

    def _update_rows(self) -> None:
        method = self.method
        self.form.setRowVisible(self.method_box, self.plan.use_case is UseCase.VALIDATE)
        self.form.setRowVisible(self.matches, method == "connector")
        shown = self._shown()
        for field in self._fields():
            self.form.setRowVisible(field, field in shown)
        if method == "smtp-auth":
            self.setSubTitle("The domain you send from, and the mailbox the device signs in as.")
            self.mailbox_label.setText("Mail&box to sign in as:")
            self.mailbox.hint = (
                "The device signs in as this mailbox; it needs a licence and SMTP AUTH allowed."
            )
        else:
            self.setSubTitle(
                "The domain you send from, and the address the device sends as. Nobody signs in: "
                + (
                    "Microsoft 365 accepts the mail because it is for your own mailboxes."
                    if method == "direct-send"
                    else "an inbound connector recognises your office."
                )
            )
            self.mailbox_label.setText("Sender add&ress:")
            self.mailbox.hint = "The address the device sends from; it must be in one of your domains."
        # Direct Send uses the IP only for the SPF check; a connector needs it, and only IPv4.
        if method == "direct-send":
            self.public_ip.optional = True
            self.public_ip.hint = "Optional: the tests then check that SPF allows mail from it."
            self.public_ip.set_validator(validate.ip_address, public_ip_warning)
        else:
            self.public_ip.optional = False
            self.public_ip.hint = "The static IPv4 address the office's mail leaves from."
            self.public_ip.set_validator(connector_ip, public_ip_warning)
        self.mailbox.revalidate()

    def _domain_changed(self) -> None:
        domain = self.domain.value or "contoso.com"
        local = "scanner" if self.plan.use_case is UseCase.SCANNER else "device"
        self.mailbox.edit.setPlaceholderText(f"{local}@{domain}")
        self.mailbox.revalidate()

    def _mailbox_changed(self) -> None:
        self.from_address.edit.setPlaceholderText(self.mailbox.value or "")
        self.from_address.revalidate()

    def _mailbox_note(self, address: str) -> str | None:
        domain = self.domain.value
        if not domain or address.rpartition("@")[2] == domain:
            return None
        if self.method == "smtp-auth":
            return f"This mailbox is not in {domain}: fine if it belongs to the same Microsoft 365 tenant."
        return (
            f"Microsoft 365 accepts this sender only if its domain is one of yours; the tests check {domain}."
        )

    def _sender_note(self, address: str) -> str | None:
        mailbox = self.mailbox.value
        if not mailbox or address.lower() == mailbox.lower():
            return None
        return (
            f"{mailbox} needs Send As permission on {address}, or Microsoft 365 refuses the mail with "
            "550 5.7.60; or leave this empty to send as the mailbox."
        )

    # -- the wizard ------------------------------------------------------------------------------------

    def initializePage(self) -> None:
        tenant = self.plan.tenant
        self.method_box.setCurrentIndex(max(0, self.method_box.findData(self.plan.method)))
        self.match_certificate.setChecked(bool(tenant.certificate_name) and not tenant.public_ip)
        self.match_ip.setChecked(not self.match_certificate.isChecked())
        self.domain.setText(tenant.domain)
        self.mailbox.setText(tenant.mailbox)
        self.from_address.setText(tenant.sender if tenant.sender != tenant.mailbox else "")
        self.public_ip.setText(tenant.public_ip)
        self.certificate.setText(tenant.certificate_name)
        self._update_rows()
        self._domain_changed()
        self._mailbox_changed()

    def isComplete(self) -> bool:
        return all(field.is_valid() for field in self._shown())

    def validatePage(self) -> bool:
        if not self.isComplete():
            return False
        shown = self._shown()
        tenant = self.plan.tenant
        tenant.domain = self.domain.value or ""
        tenant.mailbox = self.mailbox.value or ""
        tenant.sender = (self.from_address.value if self.from_address in shown else "") or tenant.mailbox
        tenant.public_ip = (self.public_ip.value if self.public_ip in shown else "") or ""
        tenant.certificate_name = (self.certificate.value if self.certificate in shown else "") or ""
        if self.plan.use_case is UseCase.VALIDATE:
            self.plan.method = self.method
            if self.method != "smtp-auth":
                self.plan.auth = "none"
            elif self.plan.auth == "none":
                self.plan.auth = "password"
        return True

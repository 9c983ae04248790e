"""A small CRM screen for the embedded CRM: the tenant's accounts and contacts, with create, edit and
delete forms, through the CRM port. Every write enqueues a sync at once for the users it concerns
(the caller and the account's owner), so an edit reaches Outlook without waiting for the timer.
"""
from __future__ import annotations

import logging
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync_core.app.services import Services
from sync_core.domain.models import Account, Address, CrmContact
from sync_core.web.auth import Caller
from sync_core.web.crm_forms import Invalid, delete_named, enqueue_for, flash_banners, form_errors, named_record
from sync_core.web.crm_forms import page, submit, unsaved_banners
from sync_core.web.http import WebRequest, WebResponse, redirect, with_query
from sync_core.web.render import Banner
from sync_core.web.session import current_caller, require_csrf

log = logging.getLogger("sync_core.web")

CONTACTS_PATH = "/api/crm/contacts"
ACCOUNTS_PATH = "/api/crm/accounts"
LIST_LIMIT = 200
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")

CONTACT_LABELS = {
    "account_id": "Account", "first_name": "First name", "last_name": "Last name",
    "emails": "E-mail addresses (one per line)", "business_phone": "Business phone", "mobile_phone": "Mobile phone",
    "job_title": "Job title", "street": "Street", "city": "City", "state": "State or county",
    "postal_code": "Postal code", "country": "Country", "notes": "Notes",
}
CRM_FLASH = {
    "created": "Saved. Your Microsoft 365 sync has been asked to pick it up.",
    "updated": "Saved. Your Microsoft 365 sync has been asked to pick it up.",
    "deleted": "Deleted. Your Microsoft 365 sync has been asked to pick it up.",
    "account-created": "Account created.",
    "account-updated": "Account saved. Your Microsoft 365 sync has been asked to pick it up.",
}


# The caps most of the form's fields share (Outlook's own).
Line = Annotated[str, Field(max_length=255)]
Phone = Annotated[str, Field(max_length=64)]


class ContactForm(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    account_id: str = Field(min_length=1, max_length=64)
    first_name: Line = ""
    last_name: Line = ""
    emails: str = Field(default="", max_length=2000)
    business_phone: Phone = ""
    mobile_phone: Phone = ""
    job_title: Line = ""
    street: str = Field(default="", max_length=1024)
    city: Line = ""
    state: Line = ""
    postal_code: str = Field(default="", max_length=40)
    country: Line = ""
    notes: str = Field(default="", max_length=4000)

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: str) -> str:
        for email in email_list(value):
            if not _EMAIL.match(email):
                raise ValueError(f"{email!r} is not an e-mail address")
        return value

    def to_contact(self, tenant_id: str, contact_id: str = "", version: str = "") -> CrmContact:
        if not (self.first_name or self.last_name or email_list(self.emails)):
            raise ValueError("a contact needs a name or an e-mail address")
        return CrmContact(
            id=contact_id, tenant_id=tenant_id, account_id=self.account_id, first_name=self.first_name,
            last_name=self.last_name, emails=tuple(email_list(self.emails)), business_phone=self.business_phone,
            mobile_phone=self.mobile_phone, job_title=self.job_title,
            address=Address(street=self.street, city=self.city, state=self.state, postal_code=self.postal_code,
                             country=self.country),
            notes=self.notes, version=version)


def email_list(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[\n,;]+", value) if part.strip()]


def contact_values(contact: CrmContact) -> dict[str, str]:
    return {"account_id": contact.account_id, "first_name": contact.first_name, "last_name": contact.last_name,
            "emails": "\n".join(contact.emails), "business_phone": contact.business_phone,
            "mobile_phone": contact.mobile_phone, "job_title": contact.job_title, "street": contact.address.street,
            "city": contact.address.city, "state": contact.address.state,
            "postal_code": contact.address.postal_code, "country": contact.address.country, "notes": contact.notes}


def _notify(services: Services, caller: Caller, account: Account | None) -> None:
    """Enqueue the sync of the caller and of the account's owner, when they are connected."""
    owner = [account.owner_user_id] if account is not None and account.owner_user_id else []
    enqueue_for(services, caller, [caller.user_id, *owner])


def _page(template: str, services: Services, caller: Caller, status: int = 200, **context: object) -> WebResponse:
    return page(template, services, caller, CONTACT_LABELS, status, **context)


# -- accounts --------------------------------------------------------------------------------------

def accounts(services: Services, request: WebRequest) -> WebResponse:
    caller = current_caller(services, request)
    errors: dict[str, str] = {}
    values = {"name": "", "owned": "on"}
    status = 200
    if request.method == "POST":
        form = request.form()
        require_csrf(services, caller, form)
        name = " ".join(form.get("name", "").split())
        values = {"name": name, "owned": "on" if form.get("owned") else ""}
        if not name or len(name) > 255:
            errors["name"] = "an account needs a name of at most 255 characters"
            status = 400
        else:
            account = services.crm.create_account(caller.tenant_id, name, caller.user_id if values["owned"] else None)
            _notify(services, caller, account)
            return redirect(with_query(ACCOUNTS_PATH, flash="account-created"))
    listed = services.crm.list_accounts(caller.tenant_id)
    refused = [Banner("error", "The account was not created: " + errors["name"])] if errors else []
    banners = flash_banners(request, CRM_FLASH) + refused
    return _page("crm_accounts.html", services, caller, status, title="CRM accounts", banners=banners,
                 accounts=listed, me=caller.user_id, values=values, errors=errors)


def account(services: Services, request: WebRequest) -> WebResponse:
    """Rename an account or change its owner (the contacts' company in Outlook follows)."""
    caller, account_id, current = named_record(services, request, "account_id", "account", services.crm.get_accounts,
                                               "There is no such account.")
    values = {"name": current.name, "owner": _owner_choice(current.owner_user_id, caller.user_id)}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        form = request.form()
        require_csrf(services, caller, form)
        name = " ".join(form.get("name", "").split())
        values = {"name": name, "owner": form.get("owner", "")}
        if not name or len(name) > 255:
            errors["name"] = "an account needs a name of at most 255 characters"
        if values["owner"] not in ("me", "nobody", "keep"):
            errors["owner"] = "choose who owns the account"
        if errors:
            status = 400
        else:
            updated = current
            if name != current.name:
                updated = services.crm.rename_account(caller.tenant_id, account_id, name)
            owner = {"me": caller.user_id, "nobody": None, "keep": current.owner_user_id}[values["owner"]]
            if owner != current.owner_user_id:
                updated = services.crm.set_account_owner(caller.tenant_id, account_id, owner)
            _notify(services, caller, current)
            _notify(services, caller, updated)
            return redirect(with_query(ACCOUNTS_PATH, flash="account-updated"))
    banners = [Banner("error", "Nothing was saved:", list(errors.values()))] if errors else []
    return _page("crm_account.html", services, caller, status, title="Edit account", banners=banners,
                 account=current, values=values, errors=errors, me=caller.user_id)


def _owner_choice(owner: str | None, me: str) -> str:
    if owner == me:
        return "me"
    return "nobody" if owner is None else "keep"


# -- contacts --------------------------------------------------------------------------------------

def _contact_form_page(services: Services, caller: Caller, *, title: str, action: str, values: dict[str, str],
                       errors: dict[str, str], contact: CrmContact | None, status: int = 200) -> WebResponse:
    banners = unsaved_banners(errors, CONTACT_LABELS)
    return _page("crm_record.html", services, caller, status, section="Contacts", form="_contact_form.html",
                 title=title, banners=banners, action=action, values=values, errors=errors, contact=contact,
                 accounts=services.crm.list_accounts(caller.tenant_id))


def _parse(form: dict[str, str], tenant_id: str, contact_id: str = "", version: str = "") -> CrmContact:
    try:
        return ContactForm.model_validate(form).to_contact(tenant_id, contact_id, version)
    except ValidationError as exc:
        raise Invalid(form_errors(exc, "form"), "contact form") from None
    except ValueError as exc:
        raise Invalid({"form": str(exc)}, "contact form") from None


def contacts(services: Services, request: WebRequest) -> WebResponse:
    caller = current_caller(services, request)
    if request.method == "POST":
        def show(values: dict[str, str], errors: dict[str, str], status: int) -> WebResponse:
            return _contact_form_page(services, caller, title="New contact", action=CONTACTS_PATH, values=values,
                                      errors=errors, contact=None, status=status)

        def save(form: dict[str, str]) -> Account:
            wanted = _parse(form, caller.tenant_id)
            account = services.crm.get_accounts(caller.tenant_id, [wanted.account_id]).get(wanted.account_id)
            if account is None:
                raise Invalid({"account_id": "choose one of the accounts listed"})
            services.crm.create_contact(wanted)
            return account

        return submit(services, caller, request, show, save, lambda account: _notify(services, caller, account),
                      with_query(CONTACTS_PATH, flash="created"))
    listed = services.crm.list_contacts(caller.tenant_id, limit=LIST_LIMIT)
    all_accounts = services.crm.list_accounts(caller.tenant_id)
    return _page("crm_contacts.html", services, caller, title="CRM contacts", banners=flash_banners(request, CRM_FLASH),
                 contacts=listed, account_names={a.id: a.name for a in all_accounts}, limit=LIST_LIMIT,
                 accounts=all_accounts, values={}, errors={})


def contact(services: Services, request: WebRequest) -> WebResponse:
    caller, contact_id, current = named_record(services, request, "contact_id", "contact", services.crm.get_contacts,
                                               "There is no such contact (it may have been deleted).")
    action = f"{CONTACTS_PATH}/{contact_id}"

    def show(values: dict[str, str], errors: dict[str, str], status: int) -> WebResponse:
        return _contact_form_page(services, caller, title="Edit contact", action=action, values=values,
                                  errors=errors, contact=current, status=status)

    if request.method != "POST":
        return show(contact_values(current), {}, 200)

    def save(form: dict[str, str]) -> dict[str, Account]:
        wanted = _parse(form, caller.tenant_id, contact_id, form.get("version", ""))
        accounts_found = services.crm.get_accounts(caller.tenant_id, {wanted.account_id, current.account_id})
        if wanted.account_id not in accounts_found:
            raise Invalid({"account_id": "choose one of the accounts listed"})
        services.crm.update_contact(wanted)
        return accounts_found

    def saved(accounts_found: dict[str, Account]) -> None:
        for account in accounts_found.values():
            _notify(services, caller, account)

    return submit(services, caller, request, show, save, saved, with_query(CONTACTS_PATH, flash="updated"),
                  editing="contact")


def delete_contact(services: Services, request: WebRequest) -> WebResponse:
    def deleted(caller: Caller, current: CrmContact) -> None:
        account = services.crm.get_accounts(caller.tenant_id, [current.account_id]).get(current.account_id)
        _notify(services, caller, account)

    return delete_named(services, request, "contact_id", "contact", services.crm.get_contacts,
                        services.crm.delete_contact, deleted, CONTACTS_PATH)


def crm_home(services: Services, request: WebRequest) -> WebResponse:
    current_caller(services, request)
    return redirect(CONTACTS_PATH)

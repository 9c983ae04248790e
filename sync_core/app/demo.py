"""Demo data for `make run`: a CRM tenant on a paid plan with one user, a few accounts and
contacts, the app registered in the local Microsoft 365 emulator, and a demo mailbox to sign in to.
Idempotent: a second `make run` finds everything and seeds nothing twice."""
from __future__ import annotations

from typing import Any

import httpx

from sync_core.domain.models import CrmContact
from sync_core.app.services import Services
from sync_core.domain.tenants import Plan, Tenant
from sync_core.web.auth import launch_url

DEMO_TENANT = "demo-tenant"
DEMO_USER = "demo-user"
DEMO_MAILBOX = ("Dana Demo", "dana@demo.test", "demo-password-1")
DEMO_PEOPLE = [
    ("Acme Ltd", "Ada", "Lovelace", "ada@acme.example", "Chief Engineer"),
    ("Acme Ltd", "Alan", "Turing", "alan@acme.example", "Cryptanalyst"),
    ("Globex Corporation", "Grace", "Hopper", "grace@globex.example", "Rear Admiral"),
]


def seed_demo(services: Services, emulator: dict[str, Any] | None) -> list[str]:
    settings = services.settings
    tenants = services.tenants
    lines: list[str] = []
    if tenants.get(DEMO_TENANT).plan is not Plan.PAID:
        tenants.save(Tenant(id=DEMO_TENANT, name="Demo Ltd", plan=Plan.PAID))
    if not services.crm.list_accounts(DEMO_TENANT):
        accounts = {name: services.crm.create_account(DEMO_TENANT, name, DEMO_USER)
                    for name in dict.fromkeys(p[0] for p in DEMO_PEOPLE)}
        services.crm.import_contacts([
            CrmContact(id="", tenant_id=DEMO_TENANT, account_id=accounts[account].id, first_name=first,
                       last_name=last, emails=(email,), job_title=title)
            for account, first, last, email, title in DEMO_PEOPLE])
        lines.append(f"Seeded the demo CRM tenant with {len(DEMO_PEOPLE)} contacts.")
    services.connections.get_or_create(DEMO_TENANT, DEMO_USER)
    if emulator and emulator.get("control"):
        with httpx.Client(base_url=str(emulator["control"]), trust_env=False, timeout=10) as control:
            control.post("/apps", json={"client_id": settings.client_id, "client_secret": settings.client_secret,
                                        "redirect_uris": [f"{settings.public_base_url}/api/oauth/callback"]}
                         ).raise_for_status()
            known = {u["userPrincipalName"].lower() for u in control.get("/users").json().get("value", [])}
            name, upn, password = DEMO_MAILBOX
            if upn not in known:
                control.post("/users", json={"displayName": name, "userPrincipalName": upn, "password": password}
                             ).raise_for_status()
        lines.append(f"Demo Microsoft 365 sign-in: {upn} / {password}  (Outlook side: {emulator.get('ui', '')})")
    link = launch_url(settings.public_base_url, settings.crm_launch_secret, DEMO_TENANT, DEMO_USER, lifetime=240)
    lines.append(f"Open the settings page as the demo CRM user (link valid 4 minutes): {link}")
    lines.append("A fresh link any time: .venv/bin/python -m sync_core launch-link "
                 f"--tenant {DEMO_TENANT} --user {DEMO_USER}")
    lines.append(f"The demo CRM screen: {settings.public_base_url}/api/crm/contacts (after opening the link)")
    return lines

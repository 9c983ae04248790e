"""A stateful local emulator of the parts of Microsoft Graph v1.0 and the Microsoft identity platform that crm365sync uses."""

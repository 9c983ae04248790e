"""The HTML pages of the emulated sign-in: sign-in, consent, the form_post auto-submit page, error pages.

Plain server-rendered HTML that works without JavaScript (the form_post page also has a visible button)
and is usable with a keyboard and a screen reader: every input has a label, errors are announced
(`role="alert"`) and tied to the field they concern.
"""
from __future__ import annotations

from jinja2 import DictLoader, Environment

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ title }}</title>
<style>
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         background: #f2f2f2; font: 15px/1.5 "Segoe UI", system-ui, sans-serif; color: #1b1b1b; }
  main { background: #fff; width: min(440px, 100% - 2rem); padding: 44px; box-sizing: border-box;
         box-shadow: 0 2px 6px rgba(0, 0, 0, .2); }
  .brand { margin: 0 0 16px; font-weight: 600; color: #5e5e5e; }
  h1 { font-size: 24px; font-weight: 600; margin: 0 0 12px; }
  h2 { font-size: 17px; font-weight: 600; margin: 20px 0 8px; }
  label { display: block; margin-top: 16px; font-weight: 600; }
  input[type=text], input[type=password] { display: block; width: 100%; box-sizing: border-box; margin-top: 4px;
         padding: 6px 8px; font: inherit; border: 1px solid #666; }
  input[aria-invalid=true] { border-color: #a80000; }
  .actions { display: flex; justify-content: flex-end; gap: 8px; margin-top: 24px; }
  button { font: inherit; min-width: 108px; padding: 6px 12px; border: 1px solid #0067b8; background: #0067b8;
           color: #fff; cursor: pointer; }
  button.secondary { background: #fff; color: #1b1b1b; border-color: #8a8a8a; }
  button:focus-visible, input:focus-visible { outline: 3px solid #1b1b1b; outline-offset: 2px; }
  .error { color: #a80000; margin: 8px 0; }
  .account { margin: 0 0 8px; color: #1b1b1b; }
  ul.permissions { padding-left: 20px; }
  ul.permissions li { margin: 6px 0; }
  code { font-size: 12px; color: #5e5e5e; }
  .details { font-size: 12px; color: #5e5e5e; word-break: break-all; }
</style>
</head>
<body>
<main aria-labelledby="heading">
<p class="brand">Microsoft 365 emulator</p>
<h1 id="heading">{{ heading }}</h1>
{% block content %}{% endblock %}
</main>
</body>
</html>
"""

_SIGN_IN = """{% extends "base" %}{% block content %}
<p>to continue to <strong>{{ app_name }}</strong></p>
{% if error %}<p id="signin-error" class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
  <input type="hidden" name="flow" value="{{ flow }}">
  <label for="login">Email address</label>
  <input id="login" name="login" type="text" inputmode="email" autocomplete="username" spellcheck="false"
         required value="{{ login }}"{% if error %} aria-invalid="true" aria-describedby="signin-error"{% endif %}
         {% if not login %}autofocus{% endif %}>
  <label for="passwd">Password</label>
  <input id="passwd" name="passwd" type="password" autocomplete="current-password" required
         {% if error %}aria-invalid="true" aria-describedby="signin-error"{% endif %}{% if login %} autofocus{% endif %}>
  <div class="actions"><button type="submit">Sign in</button></div>
</form>
{% endblock %}"""

_CONSENT = """{% extends "base" %}{% block content %}
<p class="account">{{ account }}</p>
<p><strong>{{ app_name }}</strong> would like to:</p>
<ul class="permissions" aria-label="Permissions requested">
{% for item in items %}  <li>{{ item.description }} <code>{{ item.name }}</code></li>
{% endfor %}</ul>
<p>Accepting these permissions means that you allow this app to use your data as specified in its terms of
service and privacy statement. You can change these permissions later.</p>
<form method="post" action="{{ action }}">
  <input type="hidden" name="flow" value="{{ flow }}">
  <div class="actions">
    <button type="submit" name="action" value="cancel" class="secondary">Cancel</button>
    <button type="submit" name="action" value="accept">Accept</button>
  </div>
</form>
{% endblock %}"""

_FORM_POST = """{% extends "base" %}{% block content %}
<form id="response" method="post" action="{{ redirect_uri }}">
{% for name, value in fields %}  <input type="hidden" name="{{ name }}" value="{{ value }}">
{% endfor %}  <p>Returning you to the application.</p>
  <div class="actions"><button type="submit">Continue</button></div>
</form>
<script>document.getElementById("response").submit();</script>
{% endblock %}"""

_ERROR = """{% extends "base" %}{% block content %}
<p role="alert">{{ message }}</p>
<p class="details">Trace ID: {{ trace_id }}<br>Correlation ID: {{ correlation_id }}<br>Timestamp: {{ timestamp }}</p>
{% endblock %}"""

_MESSAGE = """{% extends "base" %}{% block content %}
<p>{{ message }}</p>
{% endblock %}"""

_env = Environment(loader=DictLoader({"base": _BASE, "sign_in": _SIGN_IN, "consent": _CONSENT,
                                      "form_post": _FORM_POST, "error": _ERROR, "message": _MESSAGE}),
                   autoescape=True)


def sign_in_page(*, action: str, flow: str, app_name: str, login: str = "", error: str | None = None) -> str:
    return _env.get_template("sign_in").render(title="Sign in to your account", heading="Sign in", action=action,
                                               flow=flow, app_name=app_name, login=login, error=error)


def consent_page(*, action: str, flow: str, app_name: str, account: str, items: list[tuple[str, str]]) -> str:
    return _env.get_template("consent").render(
        title="Permissions requested", heading="Permissions requested", action=action, flow=flow,
        app_name=app_name, account=account, items=[{"name": n, "description": d} for n, d in items])


def form_post_page(*, redirect_uri: str, fields: dict[str, str]) -> str:
    return _env.get_template("form_post").render(title="Working...", heading="Signing you in",
                                                 redirect_uri=redirect_uri, fields=list(fields.items()))


def error_page(*, message: str, trace_id: str, correlation_id: str, timestamp: str) -> str:
    return _env.get_template("error").render(
        title="Sign in to your account", heading="Sorry, but we're having trouble signing you in.",
        message=message, trace_id=trace_id, correlation_id=correlation_id, timestamp=timestamp)


def message_page(*, title: str, message: str) -> str:
    return _env.get_template("message").render(title=title, heading=title, message=message)

"""Jinja2 templates with autoescaping always on: every value from a user, the CRM or Microsoft
is HTML-escaped. The one stylesheet is inline and allowed by its hash in the CSP, so pages need
no static file route and no 'unsafe-inline'."""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1f23;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:.75rem 1.5rem}
header nav a{color:#fff;margin-right:1rem}
.crumbs{font-size:.9rem;opacity:.9;margin:0}
main{max-width:58rem;margin:1rem auto;padding:0 1rem}
section{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:1rem 1.25rem;margin:0 0 1rem}
h1{font-size:1.4rem;margin:.25rem 0}
h2{font-size:1.15rem;margin:0 0 .5rem}
fieldset{border:1px solid #d8dde3;border-radius:4px;margin:.5rem 0;padding:.5rem .75rem}
label{display:inline-block;margin:.2rem 0}
.field{margin:.4rem 0}
.field label{min-width:16rem}
input[type=text],select{padding:.25rem;min-width:14rem}
button{padding:.4rem .9rem;border-radius:4px;border:1px solid #1f3a5f;background:#1f3a5f;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f3a5f}
button.danger{background:#b42318;border-color:#b42318}
.banner{padding:.6rem 1rem;border-radius:4px;margin:0 0 1rem}
.banner.ok{background:#dcfce7;border:1px solid #15803d;color:#14532d}
.banner.warn{background:#fef3c7;border:1px solid #b45309;color:#78350f}
.banner.error{background:#fee2e2;border:1px solid #b91c1c;color:#7f1d1d}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e5e7eb;text-align:left;padding:.3rem .4rem;vertical-align:top}
.muted{color:#57606a}
.inline{display:inline}
code{background:#eef1f4;padding:0 .2rem;border-radius:3px}
#tasks_enabled:not(:checked)~.task-panel:not(.open){display:none}
.task-panel{margin-left:1.5rem}
"""

STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=True,  # every template, whatever its extension
    undefined=StrictUndefined,  # a missing value is a bug, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["css"] = Markup(CSS)


@dataclass(frozen=True)
class Banner:
    kind: str  # ok | warn | error
    text: str
    details: list[str] = field(default_factory=list)


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)

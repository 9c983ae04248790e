"""The Function App: registers the Blueprints of functions/ and nothing else."""
import azure.functions as func

from functions.crm_screen import bp as crm_screen_bp
from functions.health import bp as health_bp
from functions.oauth import bp as oauth_bp
from functions.pages import bp as pages_bp
from functions.timer import bp as timer_bp
from functions.webhook import bp as webhook_bp
from functions.worker import bp as worker_bp
from sync_core.logs import install_redaction

# The Functions worker imports this module before the platform adds its log handlers (Application
# Insights): from here on every record reaching any handler, added now or later, has its secrets masked.
install_redaction()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (health_bp, pages_bp, oauth_bp, webhook_bp, crm_screen_bp, timer_bp, worker_bp):
    app.register_functions(blueprint)

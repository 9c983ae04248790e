"""Local development host for function_app.app (Azure Functions Core Tools cannot be installed here)."""

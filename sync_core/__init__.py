"""crm365sync core: models, sync planner, engine and adapters (no Azure Functions import)."""

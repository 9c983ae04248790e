"""Adapters: the ports of sync_core implemented on Azure Table/Queue Storage and Microsoft Graph.

Import the module you need (`sync_core.adapters.tables.crm`, `.state_tables`, `.queues`, ...);
nothing is imported here, so loading one adapter never pulls in another's SDK.
"""

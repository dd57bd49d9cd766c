"""Framework integrations for the platform's own routes: Starlette and FastAPI."""

"""ASGI entry point for granian/uvicorn: `app.server.asgi:app`."""

from app.server.app import create_app

app = create_app()

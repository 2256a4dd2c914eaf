"""WSGI entry point for gunicorn and ``flask --app wsgi``."""
from neptun_flask import create_app

app = create_app()

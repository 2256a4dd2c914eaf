"""WSGI entry point for gunicorn and ``flask --app wsgi``."""
import gc

from neptun_flask import create_app

app = create_app()

# Everything built so far (modules, the app, SQLAlchemy's metadata) lives as long as the
# process: keep it out of the cyclic garbage collector's full collections, which would
# otherwise walk all of it, tens of milliseconds each time, while every stream waits.
gc.freeze()

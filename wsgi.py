"""WSGI entry point for gunicorn and ``flask --app wsgi``."""
import gc

from neptun_flask import create_app

app = create_app()

# Everything built so far (modules, the app, SQLAlchemy's metadata) lives as long as the
# process: keep it out of the cyclic garbage collector's full collections, which would
# otherwise walk all of it, tens of milliseconds each time, while every stream waits.
gc.freeze()
# The collector runs as the heap grows, that is while a burst of streams starts, where its
# pauses add to every stream's first token: a first threshold of 7000 (Python's is 700)
# halves the time in it when 500 streams start at once (tests/bench/README.md).
gc.set_threshold(7000, *gc.get_threshold()[1:])

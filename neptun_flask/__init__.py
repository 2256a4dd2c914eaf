"""neptun-flask: a self-hostable Flask backend for streaming LLM chat."""
from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

from flask import Flask
from flask.sessions import SessionInterface
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from .catalog import load_catalog
from .config import load_config
from .errors import register_error_handlers
from .batching import register_batchers
from .extensions import db, limiter, migrate
from . import logs, metrics, security
from .startup import StartupError, check_schema, is_serving


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: config, extensions, catalog, blueprints, error handlers."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(load_config())
    if test_config:
        app.config.update(test_config)
    configure(app)
    if is_serving() and not app.config.get("TESTING"):
        check_schema(create_engine(app.config["SQLALCHEMY_DATABASE_URI"]), migrate.directory)
    register_extensions(app)
    app.extensions["neptun_catalog"] = load_catalog(app.config["NEPTUN_MODELS_FILE"])
    register_blueprints(app)
    register_error_handlers(app)
    metrics.init_app(app)
    logs.init_app(app)
    security.init_app(app)
    return app


def configure(app: Flask) -> None:
    """Fill derived settings; refuse to start without a secret in production."""
    config = app.config
    logs.configure_logging(config["LOG_LEVEL"], config["LOG_FORMAT"])
    # flask-limiter logs the rate-limit key (it holds the email tried) at info level.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    if not config["SECRET_KEY"]:
        if not (config["DEBUG_MODE"] or config.get("TESTING")):
            raise StartupError("SECRET_KEY must be set (or FLASK_DEBUG=1 for development)")
        config["SECRET_KEY"] = "dev-only-secret"
    if not config["SQLALCHEMY_DATABASE_URI"]:
        os.makedirs(app.instance_path, exist_ok=True)
        config["SQLALCHEMY_DATABASE_URI"] = (
            "sqlite:///" + os.path.join(app.instance_path, "neptun.sqlite3"))
    try:
        make_url(config["SQLALCHEMY_DATABASE_URI"]).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        # (The URL itself is not repeated: it may hold a password.)
        raise StartupError(f"DATABASE_URL is not a usable SQLAlchemy database URL "
                           f"({type(error).__name__})") from None
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", _engine_options(config))


def _engine_options(config) -> dict[str, Any]:
    """Pool settings: DATABASE_POOL_SIZE connections, checked before use. Statement
    parameters (messages, emails, password hashes) never reach logs or error messages."""
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    options: dict[str, Any] = {"hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if url.database in (None, "", ":memory:"):
            return options  # one shared in-memory connection: no pool to size
    else:
        options["pool_pre_ping"] = True  # a server restart must not fail the next requests
    # LIFO: the connection used last is reused while it is warm (its page and statement
    # caches); the rest stay idle, and a server may time them out without harm.
    options.update(pool_size=config["DATABASE_POOL_SIZE"], max_overflow=0, pool_timeout=30,
                   pool_use_lifo=True)
    return options


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """SQLite needs foreign keys switched on (for cascades) and WAL for concurrent readers."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class _NoFlaskSession(SessionInterface):
    """Flask's signed-cookie session is unused: its cookie name carries our opaque tokens."""

    def open_session(self, app, request):
        """Always the null session (writing to it raises)."""
        return None

    def save_session(self, app, session, response):
        """Never write Flask's session cookie over the session token."""


def _belongs_to_limiter(hook) -> bool:
    """A hook Flask-Limiter registered: its bound method, or a partial of one of its methods."""
    owner = hook.args[0] if isinstance(hook, partial) and hook.args else getattr(
        hook, "__self__", None)
    return owner is limiter


def register_extensions(app: Flask) -> None:
    """Bind db, migrations and the rate limiter; switch off Flask's cookie session."""
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True)
    limiter.init_app(app)
    # There are no application-wide or default limits: decorated routes check their own limits
    # inside the decorator, so the global before-request hook would only cost every request.
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in hooks:
        hooks.remove(limiter._check_request_limit)
    # Its after-request hook (rate-limit headers) and its teardown (per-request state, kept on
    # the request context) matter only where a limit is checked: the auth blueprint.
    for funcs in (app.after_request_funcs, app.teardown_request_funcs):
        ours = [hook for hook in funcs.get(None, []) if _belongs_to_limiter(hook)]
        for hook in ours:
            funcs[None].remove(hook)
            funcs.setdefault("auth", []).append(hook)
    app.session_interface = _NoFlaskSession()
    # Database work of concurrent requests, batched (see batching.py); after db is bound.
    from .ai.admission import admit_chat_requests
    from .auth.sessions import find_sessions
    from .generations import store as generations_store
    register_batchers(app, sessions=find_sessions, chat_requests=admit_chat_requests,
                      generation_ends=metrics.count_stores(generations_store.finish))
    register_generations(app)


def register_generations(app: Flask) -> None:
    """The app's generations on this process, with the shared log its config names."""
    from .batching import app_batcher
    from .generations.log import make_log
    from .generations.manager import Generations

    config = app.config
    with app.app_context():
        engine = db.engine
        finisher = app_batcher("generation_ends")
    app.extensions["neptun_generations"] = Generations(
        engine, make_log(config, engine), finisher,
        grace=config["STREAM_DETACH_GRACE_SECONDS"], reap_seconds=config["STREAM_REAP_SECONDS"])


def register_blueprints(app: Flask) -> None:
    """Register every blueprint."""
    from . import ai, auth, chats, health, openai

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(chats.bp)
    app.register_blueprint(openai.bp)
    app.register_blueprint(openai.keys_bp)
    for blueprint in ai.BLUEPRINTS:
        app.register_blueprint(blueprint)
    from .auth.sessions import refresh_cookie
    app.after_request(refresh_cookie)

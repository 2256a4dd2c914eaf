"""neptun-flask: a self-hostable Flask backend for streaming LLM chat."""
from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from flask.sessions import SessionInterface
from sqlalchemy import create_engine, event
from werkzeug.middleware.proxy_fix import ProxyFix
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
    if app.config["TRUSTED_PROXIES"] > 0:
        # The client address is the one X-Forwarded-For holds that many hops back; without
        # trusted proxies the header is ignored (anyone could send one).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXIES"])
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
    """Pool settings: DATABASE_POOL_SIZE connections; every wait bounded by a part of
    DATABASE_TIMEOUT (connecting, the pool, a statement; dbguard.py watches silent
    connections). Statement parameters (messages, emails, password hashes) never reach logs
    or error messages."""
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    bound = config["DATABASE_TIMEOUT"]
    options: dict[str, Any] = {"hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": bound / 2, "check_same_thread": False}
        if url.database in (None, "", ":memory:"):
            return options  # one shared in-memory connection: no pool to size
    else:
        # Checked before use (a server restart must not fail the next requests): by
        # dbguard's bounded ping, not pool_pre_ping, which no timer could watch.
        options["connect_args"] = {
            "connect_timeout": max(2, int(bound / 6)), "keepalives": 1,
            "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
            "tcp_user_timeout": int(bound * 1000 / 3),
            "options": f"-c statement_timeout={int(bound * 1000 / 2)}"}
    # LIFO: the connection used last is reused while it is warm (its page and statement
    # caches); the rest stay idle, and a server may time them out without harm.
    options.update(pool_size=config["DATABASE_POOL_SIZE"], max_overflow=0,
                   pool_timeout=bound / 3, pool_use_lifo=True)
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


def register_extensions(app: Flask) -> None:
    """Bind db, migrations and the rate limiter; switch off Flask's cookie session."""
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True)
    limiter.init_app(app)
    app.session_interface = _NoFlaskSession()
    from .dbguard import guard
    with app.app_context():
        guard(db.engine, app.config["DATABASE_TIMEOUT"] / 3)
    # Database work of concurrent requests, batched (see batching.py); after db is bound.
    from .ai.admission import admit_chat_requests
    from .auth.sessions import find_sessions
    register_batchers(app, sessions=find_sessions, chat_requests=admit_chat_requests)
    register_generations(app)


def register_generations(app: Flask) -> None:
    """The app's generations on this process, with the shared log its config names."""
    from .generations.log import make_log
    from .generations.manager import Generations

    config = app.config
    with app.app_context():
        engine = db.engine
    app.extensions["neptun_generations"] = Generations(
        engine, make_log(config, engine), grace=config["STREAM_DETACH_GRACE_SECONDS"],
        reap_seconds=config["STREAM_REAP_SECONDS"], retry_seconds=config["REPLY_RETRY_SECONDS"],
        wait_seconds=config["DATABASE_TIMEOUT"], time_limit=config["UPSTREAM_TOTAL_TIMEOUT"])


def register_blueprints(app: Flask) -> None:
    """Register every blueprint."""
    from . import ai, auth, chats, health, openai, openapi, web

    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(openapi.docs_bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(chats.bp)
    app.register_blueprint(openai.bp)
    app.register_blueprint(openai.keys_bp)
    for blueprint in ai.BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.register_blueprint(web.bp)
    from .auth.sessions import refresh_cookie
    app.after_request(refresh_cookie)

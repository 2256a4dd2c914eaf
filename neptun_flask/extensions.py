"""Flask extensions, created unbound and bound to the app in ``create_app``."""
from pathlib import Path

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base for the typed models."""


db = SQLAlchemy(model_class=Base)
#: The Alembic migrations, shipped inside the package (found from any working folder).
MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")
migrate = Migrate(directory=MIGRATIONS)
# No default limits: only the routes that opt in are limited. A storage that fails (Redis
# away) lets requests through with a logged warning instead of failing them.
limiter = Limiter(key_func=get_remote_address, default_limits=[], swallow_errors=True)

"""The model catalog: the single source for chat routes, the router and ``/api/models``."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from flask import current_app
from marshmallow import ValidationError

from .providers.base import ModelSpec
from .schemas import ModelConfigurationSchema, ModelsPayloadSchema

#: Publishers that name a provider directly; every other publisher is hosted on Hugging Face.
CHAT_PROVIDERS = ("cloudflare", "openrouter", "ollama")
PROVIDERS = ("huggingface",) + CHAT_PROVIDERS

_entry_schema = ModelConfigurationSchema()


class CatalogError(RuntimeError):
    """The catalog file is unreadable or invalid; startup stops with this message."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One model of the catalog."""

    spec: ModelSpec
    retired: bool
    document: dict[str, Any]   # the entry as the file has it, minus ``retired``, ``fallbacks``
    fallbacks: tuple[str, ...] = ()   # ids asked in order when this model cannot answer

    @property
    def model_id(self) -> str:
        """``publisher/name``."""
        return self.spec.model_id

    @property
    def endpoint(self) -> str:
        """The provider route advertised in ``/api/models`` endpoints."""
        return f"/api/ai/{self.spec.provider}/{self.spec.name}/chat"


def provider_of(publisher: str) -> str:
    """The provider serving a publisher's models."""
    return publisher if publisher in CHAT_PROVIDERS else "huggingface"


class Catalog:
    """The loaded catalog, in file order (which is the order of ``models``)."""

    def __init__(self, entries: list[CatalogEntry]):
        self.entries = entries
        self._by_id = {entry.model_id: entry for entry in entries}
        self._by_provider: dict[tuple[str, str], CatalogEntry] = {}
        for entry in entries:
            self._by_provider.setdefault((entry.spec.provider, entry.spec.name), entry)
        self.payload_json = json.dumps(ModelsPayloadSchema().dump(self._payload()),
                                       ensure_ascii=False)

    def get(self, model_id: str) -> CatalogEntry | None:
        """The entry for ``publisher/name``, retired ones included."""
        return self._by_id.get(model_id)

    def find(self, provider: str, name: str) -> CatalogEntry | None:
        """The (first) model of ``provider`` called ``name``."""
        return self._by_provider.get((provider, name))

    def fallbacks_of(self, entry: CatalogEntry) -> list[CatalogEntry]:
        """The entries of ``entry``'s fallbacks, in order."""
        return [self._by_id[model_id] for model_id in entry.fallbacks]

    def active_ids(self) -> list[str]:
        """Ids of the models clients may choose."""
        return [entry.model_id for entry in self.entries if not entry.retired]

    def _payload(self) -> dict[str, Any]:
        """The ``/api/models`` document."""
        configurations: dict[str, dict[str, Any]] = {}
        endpoints: dict[str, list[str]] = {provider: [] for provider in PROVIDERS}
        for entry in self.entries:
            configurations.setdefault(entry.spec.publisher, {})[entry.spec.name] = entry.document
            if not entry.retired:
                endpoints[entry.spec.provider].append(entry.endpoint)
        return {"configurations": configurations, "models": self.active_ids(),
                "endpoints": endpoints}


def load_catalog(path: str | None = None) -> Catalog:
    """Load and validate the catalog from ``path``, or the built-in one."""
    try:
        if path:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        else:
            document = json.loads(resources.files(__package__).joinpath("catalog.json")
                                  .read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CatalogError(f"cannot read model catalog {path or 'catalog.json'}: {error}") from None
    entries = _parse_entries(document, path or "catalog.json")
    _check_fallbacks(entries, path or "catalog.json")
    return Catalog(entries)


def _parse_entries(document: Any, source: str) -> list[CatalogEntry]:
    """Validate the ``configurations``-shaped document and build entries."""
    if not isinstance(document, dict) or not document:
        raise CatalogError(f"{source}: expected a non-empty object of publishers")
    entries = []
    for publisher, models in document.items():
        if not isinstance(models, dict) or not models:
            raise CatalogError(f"{source}: {publisher}: expected a non-empty object of models")
        for name, raw in models.items():
            entries.append(_parse_entry(raw, publisher, name, source))
    return entries


def _check_fallbacks(entries: list[CatalogEntry], source: str) -> None:
    """Each fallback names another model of the catalog that is not retired."""
    by_id = {entry.model_id: entry for entry in entries}
    for entry in entries:
        for model_id in entry.fallbacks:
            where = f"{source}: {entry.model_id}: fallback {model_id!r}"
            if model_id == entry.model_id:
                raise CatalogError(f"{where} is the model itself")
            if model_id not in by_id:
                raise CatalogError(f"{where} is not a model of the catalog")
            if by_id[model_id].retired:
                raise CatalogError(f"{where} is retired")
        if len(set(entry.fallbacks)) != len(entry.fallbacks):
            raise CatalogError(f"{source}: {entry.model_id}: fallbacks repeat a model")


def _parse_entry(raw: Any, publisher: str, name: str, source: str) -> CatalogEntry:
    """Validate one entry; its keys must match its publisher and name."""
    where = f"{source}: {publisher}/{name}"
    try:
        data = _entry_schema.load(raw)
    except ValidationError as error:
        raise CatalogError(f"{where}: {error.messages}") from None
    if data["publisher"] != publisher or data["name"] != name:
        raise CatalogError(f"{where}: publisher/name fields do not match their keys")
    spec = ModelSpec(provider=provider_of(publisher), publisher=publisher, name=name,
                     upstream_id=data["configuration"]["model"],
                     parameters=dict(raw["configuration"]["parameters"]))
    document = {key: value for key, value in raw.items() if key not in ("retired", "fallbacks")}
    return CatalogEntry(spec=spec, retired=data["retired"], document=document,
                        fallbacks=tuple(data["fallbacks"]))


def current_catalog() -> Catalog:
    """The catalog loaded by the running app."""
    return current_app.extensions["neptun_catalog"]

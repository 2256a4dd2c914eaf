"""Marshmallow schemas: request bodies and query args load, payloads dump."""
from __future__ import annotations

import re

from marshmallow import (EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate,
                         validates, validates_schema)

MIN_PASSWORD_LENGTH = 8
#: Longest stored email (the users.email column).
MAX_EMAIL_LENGTH = 320
#: Largest row id: ids are 32-bit INTEGER columns on PostgreSQL, and larger values sent as
#: parameters make the query itself fail (a 500), so ids beyond it are refused up front.
MAX_ID = 2**31 - 1
_ORDER_FIELDS = ("updated_at", "created_at")
def storable_id(value: int) -> bool:
    """An id a row can have; any other is a missing row (querying it would fail: integer out
    of range)."""
    return 0 < value <= MAX_ID


#: Surrogate code points: JSON decoding pairs escaped surrogates, so any left is unpaired.
_SURROGATE = re.compile("[\ud800-\udfff]")


class Text(fields.String):
    """A request string the database and UTF-8 can take: no unpaired surrogate, and no NUL
    unless ``allow_nul`` (for passwords, which are hashed, never stored).

    JSON may carry both (``\\u0000``, ``\\ud800``), but PostgreSQL refuses NUL in text columns and
    no driver (nor argon2) can encode a lone surrogate, so they would fail later as a 500.
    """

    default_error_messages = {
        "nul": "Must not contain NUL characters.",
        "surrogate": "Must not contain unpaired surrogates.",
    }

    def __init__(self, *, allow_nul: bool = False, **kwargs):
        """A String field; ``allow_nul`` lets NUL characters through."""
        super().__init__(**kwargs)
        self.allow_nul = allow_nul

    def _deserialize(self, value, attr, data, **kwargs):
        """Load the string, refusing characters it could not be stored or hashed with."""
        text = super()._deserialize(value, attr, data, **kwargs)
        if not self.allow_nul and "\x00" in text:
            raise self.make_error("nul")
        if _SURROGATE.search(text):
            raise self.make_error("surrogate")
        return text


def normalize_email(email: str) -> str:
    """An email as it is stored and looked up: trimmed and lowercased."""
    return email.strip().lower()


def _fits_column(email: str) -> None:
    """The stored form must fit the column too: lowercasing can lengthen text ("İ" becomes
    two code points), and a longer value would fail the insert (a 500 on PostgreSQL)."""
    if len(normalize_email(email)) > MAX_EMAIL_LENGTH:
        raise ValidationError(f"Longer than maximum length {MAX_EMAIL_LENGTH}.")


class SignUpSchema(Schema):
    """Body of ``POST /api/auth/sign-up``."""

    class Meta:
        unknown = EXCLUDE

    email = fields.Email(required=True, validate=_fits_column)
    password = Text(required=True, allow_nul=True, validate=validate.Length(
        min=MIN_PASSWORD_LENGTH, max=1024,
        error="Password must be between {min} and {max} characters long."))


class LoginSchema(Schema):
    """Body of ``POST /api/auth/login``."""

    class Meta:
        unknown = EXCLUDE

    email = Text(required=True, validate=validate.Length(min=1, max=MAX_EMAIL_LENGTH))
    password = Text(required=True, allow_nul=True,
                    validate=validate.Length(min=1, max=1024))


class ChatCreateSchema(Schema):
    """Body of ``POST /api/users/<id>/chats``; the route checks the model against the catalog."""

    class Meta:
        unknown = EXCLUDE

    model = Text(required=True)
    name = Text(required=True, validate=validate.Length(min=3, max=255))


class ChatRenameSchema(Schema):
    """Body of ``PATCH /api/users/<id>/chats/<chat_id>``."""

    class Meta:
        unknown = EXCLUDE

    name = Text(required=True, validate=validate.Length(min=3, max=255))


class ChatIdsSchema(Schema):
    """Body of ``DELETE /api/users/<id>/chats``."""

    class Meta:
        unknown = EXCLUDE

    chat_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
        required=True, validate=validate.Length(min=1, max=1000))


class ChatListArgs(Schema):
    """Query args of ``GET /api/users/<id>/chats``."""

    class Meta:
        unknown = EXCLUDE

    order_by = fields.String(load_default="updated_at", validate=validate.OneOf(_ORDER_FIELDS))
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))


# Response (dump) schemas. ``required=True`` only tells the OpenAPI document that a field is
# always present: dumping ignores it.


class UserSchema(Schema):
    """A user as clients see it."""

    id = fields.Integer(required=True)
    primary_email = fields.String(attribute="email", required=True)


class ChatSchema(Schema):
    """A chat as clients see it."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    model = fields.String(required=True)
    neptun_user_id = fields.Integer(attribute="user_id", required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


#: ``usage`` of a stored reply, in the AI SDK's names (documented shape; dumped by a method).
_USAGE = {"type": ["object", "null"],
          "required": ["promptTokens", "completionTokens", "estimated"],
          "properties": {"promptTokens": {"type": ["integer", "null"]},
                         "completionTokens": {"type": ["integer", "null"]},
                         "estimated": {"type": "boolean", "description":
                                       "The counts are estimates (the upstream gave none)"}}}


class ChatMessageSchema(Schema):
    """A stored chat message; usage is null unless the reply recorded token counts."""

    id = fields.Integer(required=True)
    message = fields.String(required=True)
    actor = fields.String(required=True, metadata={"enum": ["user", "assistant"]})
    created_at = fields.DateTime(required=True)
    model = fields.String(allow_none=True, required=True)
    finish_reason = fields.String(allow_none=True, required=True)
    usage = fields.Method("dump_usage", required=True, metadata=_USAGE)
    status = fields.Method("dump_status", required=True,
                           metadata={"type": "string", "enum": ["generating", "done"]})

    def dump_status(self, obj):
        """``generating`` while the message's generation runs, else ``done``."""
        return "generating" if obj.finish_reason is None and obj.actor == "assistant" else "done"

    def dump_usage(self, obj):
        """Token usage in the AI SDK's names; ``estimated`` when the upstream reported none
        and the counts are this service's estimates."""
        if obj.prompt_tokens is None and obj.completion_tokens is None:
            return None
        return {"promptTokens": obj.prompt_tokens, "completionTokens": obj.completion_tokens,
                "estimated": bool(obj.usage_estimated)}


#: Message part types a text-only service cannot take (AI SDK 5+ sends images as files).
REFUSED_PARTS = ("file", "image")


class MessagePartSchema(Schema):
    """One part of an AI SDK 5+ message: its text counts, other kinds the SDK sends back with
    earlier replies (``step-start``, ``reasoning``, sources, data) are accepted and ignored."""

    class Meta:
        unknown = EXCLUDE

    type = Text(required=True, validate=validate.Length(max=64))
    text = Text()

    @validates_schema
    def _takes_text_only(self, data, **kwargs):
        """Files and images are refused by name."""
        if data.get("type") in REFUSED_PARTS:
            raise ValidationError(f"Parts of type '{data['type']}' are not supported: "
                                  "this service takes text only.", "type")


class ChatMessageInSchema(Schema):
    """One incoming chat message: the seed's and ai@4's ``content``, or AI SDK 5+ ``parts``
    (whose text parts are joined); extra fields sent by the AI SDK are ignored."""

    class Meta:
        unknown = EXCLUDE

    id = Text(validate=validate.Length(min=1, max=255))
    role = fields.String(required=True, metadata={"enum": ["user", "assistant"]})
    content = Text()
    parts = fields.List(fields.Nested(MessagePartSchema), validate=validate.Length(max=1000))

    @validates("role")
    def _known_role(self, value, **kwargs):
        """user or assistant; the server owns the system prompt."""
        if value == "system":
            raise ValidationError("System messages are not accepted: the server sets the "
                                  "system prompt.")
        if value not in ("user", "assistant"):
            raise ValidationError("Must be one of: user, assistant.")

    @validates_schema
    def _has_content(self, data, **kwargs):
        """``content`` or ``parts``."""
        if "content" not in data and "parts" not in data:
            raise ValidationError("Missing data for required field.", "content")

    @post_load
    def _text(self, data, **kwargs):
        """The message as the adapters take it; ``from_parts`` marks an AI SDK 5+ message."""
        parts = data.pop("parts", None)
        data["from_parts"] = "content" not in data
        if data["from_parts"]:
            data["content"] = "".join(part.get("text", "") for part in parts
                                      if part["type"] == "text")
        return data


class ChatRequestSchema(Schema):
    """Body of ``POST /api/ai/.../chat``: the seed's ``{messages}``, plus what the AI SDK sends
    (the chat ``id``, ``trigger``); other fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    messages = fields.List(fields.Nested(ChatMessageInSchema), required=True,
                           validate=validate.Length(min=1, error="messages must not be empty."))
    trigger = Text(validate=validate.Length(max=64))
    #: Read by the view itself (ai/view.py); here for the OpenAPI document.
    id = fields.Raw(allow_none=True, metadata={
        "type": ["integer", "string"],
        "description": "The chat id (where the AI SDK sends it), used when the query has no "
                       "chat_id."})


_BOOLEAN = {"truthy": {"true", "1"}, "falsy": {"false", "0"}}
#: Without ``stream_protocol`` the POST answers in ``ui`` for an AI SDK 5+ body, else ``data``.
_PROTOCOL = {"load_default": None, "validate": validate.OneOf(("data", "ui", "text"))}


class ChatArgs(Schema):
    """Query args of ``POST /api/ai/.../chat``; without ``chat_id`` the body's ``id`` names
    the chat."""

    class Meta:
        unknown = EXCLUDE

    chat_id = fields.Integer(strict=False, load_default=None)
    is_playground = fields.Boolean(load_default=False, **_BOOLEAN)
    resumable = fields.Boolean(load_default=False, **_BOOLEAN)
    stream_protocol = fields.String(**_PROTOCOL)


class ResumeArgs(Schema):
    """Query args of ``GET /api/ai/.../chat`` (``chat_id``, or ``chatId`` as ai@4 sends it)
    and of ``GET .../chat/<chat_id>/stream``."""

    class Meta:
        unknown = EXCLUDE

    chat_id = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_ID))
    chatId = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_ID))
    stream_protocol = fields.String(**_PROTOCOL)


#: Chat-completion parameters this text-only service cannot honour (when set to anything but
#: their "off" value): a 400 naming them beats a silently different answer.
UNSUPPORTED_COMPLETION = ("tools", "tool_choice", "functions", "function_call", "audio",
                          "logprobs", "top_logprobs", "prediction", "logit_bias")
#: Content part types of OpenAI messages; only text is taken.
_TEXT_PART = "text"


class CompletionMessageSchema(Schema):
    """One message of ``POST /v1/chat/completions``: text content, or text content parts."""

    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True, validate=validate.OneOf(
        ("system", "developer", "user", "assistant"),
        error="Role {input} is not supported: use system, developer, user or assistant."))
    content = fields.Raw(required=True, allow_none=True)

    @post_load
    def _text(self, data, **kwargs):
        """The content as one string: text parts joined; other parts refused by type."""
        content = data["content"]
        if isinstance(content, list):
            texts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != _TEXT_PART or not isinstance(part.get("text"), str):
                    raise ValidationError(f"Content parts of type {kind!r} are not supported: "
                                          "this service takes text only.", "content")
                texts.append(part["text"])
            content = "".join(texts)
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise ValidationError("Must be a string or a list of text parts.", "content")
        data["content"] = Text().deserialize(content)
        return data


class CompletionRequestSchema(Schema):
    """Body of ``POST /v1/chat/completions``; parameters it does not know are ignored, those it
    cannot honour (``UNSUPPORTED_COMPLETION``, ``n`` > 1) are refused by name."""

    class Meta:
        unknown = EXCLUDE

    model = Text(required=True, validate=validate.Length(min=1, max=255))
    messages = fields.List(fields.Nested(CompletionMessageSchema), required=True,
                           validate=validate.Length(min=1, error="messages must not be empty."))
    stream = fields.Boolean(load_default=False, allow_none=True)
    stream_options = fields.Dict(allow_none=True)
    max_tokens = fields.Integer(strict=True, allow_none=True,
                                validate=validate.Range(min=1, max=MAX_ID))
    max_completion_tokens = fields.Integer(strict=True, allow_none=True,
                                           validate=validate.Range(min=1, max=MAX_ID))
    temperature = fields.Float(allow_none=True, allow_nan=False, validate=validate.Range(0, 2))
    top_p = fields.Float(allow_none=True, allow_nan=False, validate=validate.Range(0, 1))
    stop = fields.Raw(allow_none=True)
    seed = fields.Integer(strict=True, allow_none=True,
                          validate=validate.Range(min=-(2**63), max=2**63 - 1))
    n = fields.Integer(strict=True, allow_none=True,
                       validate=validate.Equal(1, error="n > 1 is not supported."))
    response_format = fields.Dict(allow_none=True)

    @validates_schema(pass_original=True)
    def _supported(self, data, original, **kwargs):
        """Tools, images and the like are refused by name; ``stop`` is up to 4 strings."""
        for name in UNSUPPORTED_COMPLETION:
            if isinstance(original, dict) and original.get(name) not in (None, False, [], {}):
                raise ValidationError(f"{name} is not supported by this service.", name)
        response_format = data.get("response_format")
        if response_format and response_format.get("type") not in (None, "text"):
            raise ValidationError("Only the text response format is supported.",
                                  "response_format")
        stop = data.get("stop")
        stops = [stop] if isinstance(stop, str) else stop
        if stops is not None and not (isinstance(stops, list) and len(stops) <= 4 and all(
                isinstance(item, str) and item for item in stops)):
            raise ValidationError("Must be a string or a list of up to 4 strings.", "stop")

    @post_load
    def _options(self, data, **kwargs):
        """Generation options as the adapters take them (catalog parameter names)."""
        options = {}
        limit = data.get("max_completion_tokens") or data.get("max_tokens")
        if limit is not None:
            options["max_new_tokens"] = limit
        for name in ("temperature", "top_p", "seed"):
            if data.get(name) is not None:
                options[name] = data[name]
        stop = data.get("stop")
        if stop is not None:
            options["stop"] = [stop] if isinstance(stop, str) else stop
        data["options"] = options
        data["include_usage"] = bool((data.get("stream_options") or {}).get("include_usage"))
        return data


class ApiKeyCreateSchema(Schema):
    """Body of ``POST /api/users/<id>/api-keys``."""

    class Meta:
        unknown = EXCLUDE

    name = Text(required=True, validate=validate.Length(min=1, max=255))


class ApiKeySchema(Schema):
    """An API key as its owner sees it (never the key itself)."""

    id = fields.Integer()
    name = fields.String()
    prefix = fields.String()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)
    usage = fields.Method("dump_usage")

    def dump_usage(self, obj):
        """Tokens the key's requests used."""
        return {"promptTokens": obj.prompt_tokens, "completionTokens": obj.completion_tokens}


class ModelParametersSchema(Schema):
    """``configuration.parameters`` of a catalog model."""

    class Meta:
        unknown = RAISE

    max_new_tokens = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    typical_p = fields.Float(required=True)
    repetition_penalty = fields.Float(required=True)
    truncate = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    return_full_text = fields.Boolean(required=True)
    temperature = fields.Float()


class ModelConfigurationDataSchema(Schema):
    """``configuration`` of a catalog model."""

    class Meta:
        unknown = RAISE

    model = fields.String(required=True, validate=validate.Length(min=1))
    parameters = fields.Nested(ModelParametersSchema, required=True)


class ModelConfigurationSchema(Schema):
    """One catalog model, as in the ``configurations`` object, plus the ``retired`` flag and
    ``fallbacks`` (``publisher/name`` ids asked in order when it cannot answer)."""

    class Meta:
        unknown = RAISE

    publisher = fields.String(required=True, validate=validate.Length(min=1))
    name = fields.String(required=True, validate=validate.Length(min=1))
    description = fields.String(required=True)
    icon = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(("instruct", "chat")))
    configuration = fields.Nested(ModelConfigurationDataSchema, required=True)
    retired = fields.Boolean(load_default=False)
    fallbacks = fields.List(fields.String(), load_default=list)


class ModelsPayloadSchema(Schema):
    """The ``GET /api/models`` payload (dump only)."""

    configurations = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True)
    models = fields.List(fields.String(), required=True)
    endpoints = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                            required=True)


class ErrorSchema(Schema):
    """Every error response: ``{statusCode, statusMessage, data?}`` (errors.py writes it)."""

    statusCode = fields.Integer(required=True)
    statusMessage = fields.String(required=True)
    data = fields.Raw(metadata={"description": "Details: field messages of a failed "
                                               "validation, the upstream's reason, ..."})


class SessionPayloadSchema(Schema):
    """``{user, loggedInAt}`` of sign-up, login and ``GET /api/auth/session``."""

    user = fields.Nested(UserSchema, required=True)
    loggedInAt = fields.DateTime(required=True)


class AuthCheckSchema(Schema):
    """``GET /api/auth/check``."""

    authenticated = fields.Boolean(required=True)


class ChatEnvelopeSchema(Schema):
    """``{chat}``."""

    chat = fields.Nested(ChatSchema, required=True)


class ChatListSchema(Schema):
    """``{chats}``."""

    chats = fields.List(fields.Nested(ChatSchema), required=True)


class ChatMessagesSchema(Schema):
    """``{chatMessages}``, oldest first."""

    chatMessages = fields.List(fields.Nested(ChatMessageSchema), required=True)


class HealthSchema(Schema):
    """``GET /health``."""

    status = fields.String(required=True)
    timestamp = fields.DateTime(required=True)
    uptime = fields.Float(required=True)


class OpenAIErrorBodySchema(Schema):
    """OpenAI's error object."""

    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(required=True, allow_none=True)
    code = fields.String(required=True, allow_none=True)


class OpenAIErrorSchema(Schema):
    """Every error under ``/v1``: ``{"error": {message, type, param, code}}``."""

    error = fields.Nested(OpenAIErrorBodySchema, required=True)


class ModelObjectSchema(Schema):
    """One model of ``GET /v1/models``."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("model"))
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)


class ModelListSchema(Schema):
    """``GET /v1/models``."""

    object = fields.String(required=True, validate=validate.Equal("list"))
    data = fields.List(fields.Nested(ModelObjectSchema), required=True)


class CompletionMessageOutSchema(Schema):
    """The reply of a ``chat.completion``."""

    role = fields.String(required=True)
    content = fields.String(required=True)
    reasoning_content = fields.String()


class CompletionChoiceSchema(Schema):
    """The one choice of a ``chat.completion``."""

    index = fields.Integer(required=True)
    message = fields.Nested(CompletionMessageOutSchema, required=True)
    finish_reason = fields.String(required=True)


class CompletionUsageSchema(Schema):
    """Token usage of a completion."""

    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)


class CompletionSchema(Schema):
    """A whole ``chat.completion`` (``stream`` false)."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("chat.completion"))
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(CompletionChoiceSchema), required=True)
    usage = fields.Nested(CompletionUsageSchema, required=True)


class ApiKeyCreatedSchema(Schema):
    """``POST /api/users/<id>/api-keys``: the key, shown this once."""

    apiKey = fields.Nested(ApiKeySchema, required=True)
    key = fields.String(required=True)


class ApiKeyListSchema(Schema):
    """``GET /api/users/<id>/api-keys``."""

    apiKeys = fields.List(fields.Nested(ApiKeySchema), required=True)

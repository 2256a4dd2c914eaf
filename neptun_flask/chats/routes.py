"""Chat and chat-message routes under ``/api/users/<user_id>/chats``."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify
from sqlalchemy import delete, select

from ..auth.sessions import require_session
from ..catalog import current_catalog
from ..errors import ApiError
from ..extensions import db
from ..models import Chat, ChatMessage, utcnow
from ..openapi import operation
from ..schemas import (ChatCreateSchema, ChatEnvelopeSchema, ChatIdsSchema, ChatListArgs,
                       ChatListSchema, ChatMessageSchema, ChatMessagesSchema, ChatRenameSchema,
                       ChatSchema)
from ..validation import load_args, load_body
from .store import owned_chat

bp = Blueprint("chats", __name__, url_prefix="/api/users/<int:user_id>/chats")

# Schemas are built once: building one copies all of its fields.
_chat = ChatSchema()
_chats = ChatSchema(many=True)
_messages = ChatMessageSchema(many=True)
_create = ChatCreateSchema()
_list_args = ChatListArgs()
_ids = ChatIdsSchema()
_rename = ChatRenameSchema()


@bp.url_value_preprocessor
def _take_user_id(endpoint, values):
    """Keep the path's user id for the guard below (views do not take it)."""
    g.path_user_id = values.pop("user_id")


@bp.before_request
def _guard():
    """401 without a valid session; 403 when the path names another user."""
    require_session()
    if g.path_user_id != g.user_id:
        raise ApiError(403, "Forbidden")


def _no_content():
    """An empty 204 response."""
    return current_app.response_class(status=204)


@bp.post("")
@operation("Create a chat for an active catalog model", tag="chats", body=ChatCreateSchema,
           responses={201: ChatEnvelopeSchema})
def create_chat():
    """Create a chat for one of the catalog's active models."""
    data = load_body(_create)
    entry = current_catalog().get(data["model"])
    if entry is None or entry.retired:
        raise ApiError(400, "Validation failed", data={"model": ["Unknown model."]})
    now = utcnow()
    chat = Chat(user_id=g.user_id, name=data["name"], model=data["model"],
                created_at=now, updated_at=now)
    db.session.add(chat)
    db.session.commit()
    return jsonify({"chat": _chat.dump(chat)}), 201


@bp.get("")
@operation("The user's chats", tag="chats", query=ChatListArgs,
           responses={200: ChatListSchema})
def list_chats():
    """The user's chats, ordered as asked (default: most recently updated first)."""
    args = load_args(_list_args)
    column = getattr(Chat, args["order_by"])
    order = column.desc() if args["order"] == "desc" else column.asc()
    chats = db.session.scalars(
        select(Chat).where(Chat.user_id == g.user_id).order_by(order, Chat.id.desc())).all()
    return jsonify({"chats": _chats.dump(chats)})


@bp.delete("")
@operation("Delete several chats (other users' ids are ignored)", tag="chats",
           body=ChatIdsSchema, responses={204: None})
def delete_chats():
    """Delete several of the user's chats; ids of other users' chats are ignored."""
    data = load_body(_ids)
    db.session.execute(delete(Chat).where(Chat.user_id == g.user_id,
                                          Chat.id.in_(data["chat_ids"])))
    db.session.commit()
    return _no_content()


@bp.get("/<int:chat_id>")
@operation("One chat", tag="chats", responses={200: ChatEnvelopeSchema}, errors=(404,))
def get_chat(chat_id: int):
    """One chat."""
    return jsonify({"chat": _chat.dump(owned_chat(chat_id, g.user_id))})


@bp.patch("/<int:chat_id>")
@operation("Rename a chat", tag="chats", body=ChatRenameSchema,
           responses={200: ChatEnvelopeSchema}, errors=(404,))
def rename_chat(chat_id: int):
    """Rename a chat."""
    data = load_body(_rename)
    chat = owned_chat(chat_id, g.user_id)
    chat.name = data["name"]
    chat.updated_at = utcnow()
    db.session.commit()
    return jsonify({"chat": _chat.dump(chat)})


@bp.delete("/<int:chat_id>")
@operation("Delete a chat and its messages", tag="chats", responses={204: None},
           errors=(404,))
def delete_chat(chat_id: int):
    """Delete a chat and its messages."""
    db.session.delete(owned_chat(chat_id, g.user_id))
    db.session.commit()
    return _no_content()


@bp.get("/<int:chat_id>/messages")
@operation("The chat's messages, oldest first", tag="chats",
           responses={200: ChatMessagesSchema}, errors=(404,))
def list_messages(chat_id: int):
    """The chat's messages, oldest first (a reply still generating has the text so far)."""
    owned_chat(chat_id, g.user_id)
    _generations().maybe_reap()
    rows = db.session.scalars(
        select(ChatMessage).where(ChatMessage.chat_id == chat_id).order_by(ChatMessage.id)).all()
    return jsonify({"chatMessages": _messages.dump(rows)})


@bp.post("/<int:chat_id>/stop")
@operation("Stop the chat's running generation", tag="chats", responses={204: None},
           errors=(404,))
def stop_chat(chat_id: int):
    """Stop the chat's running generation, on whichever worker or instance it runs."""
    owned_chat(chat_id, g.user_id)
    _generations().stop_chat(chat_id)
    return _no_content()


def _generations():
    """The app's generations (generations/manager.py)."""
    return current_app.extensions["neptun_generations"]

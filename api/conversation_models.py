"""Request and response bodies of the conversation routes (api/conversation.py): the requests validate what comes
in, the responses describe what graphs/conversation_service.py answers, for the OpenAPI document (api/openapi.py).

The request keys are the contract's camelCase (``chatType``, ``sessionId``), and lenient as the contract is: a
missing ward or message is the route's own 400 message, an unknown chat type or language becomes the default.
Responses allow extra keys where the service adds some beyond the contract (a reply's provider, cost, sources).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from api.common import BodyModel
from api.models import NonBlank, Stamp
from graphs.conversation_state import ChatType, Language

_Loose = ConfigDict(extra="ignore")
_Open = ConfigDict(extra="allow")
SESSION_ID = r"^conv_[0-9a-f]{12}_[0-9]+$"
MAX_MESSAGE_CHARS = 10_000

# --- requests ------------------------------------------------------------------------------------------------


class NewConversationBody(BodyModel):
    """``POST /conversation``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["ward"]})
    ward: NonBlank = None
    chatType: str | None = Field(
        default=None, description="strategy | analysis | planning | quick | playbook | scenario; else strategy"
    )
    language: str | None = Field(default=None, description="en | hi | te | ur; anything else: en")
    title: str | None = None


class MessagePart(BodyModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["content"]})
    type: str = "user"
    content: Annotated[str, WithJsonSchema({"type": "string", "pattern": r"\S"}, mode="validation")] = Field(
        default="", description=f"at most {MAX_MESSAGE_CHARS:,} characters once stripped"
    )


class MessageBody(BodyModel):
    """``POST /conversation/message``: a user message, answered by ``GET /conversation/stream``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["sessionId", "message"]})
    sessionId: NonBlank = None
    message: MessagePart | None = None
    chatType: str | None = None
    ward: str | None = None
    language: str | None = None


class ChatTurn(BodyModel):
    model_config = _Loose
    role: str = "user"
    content: str = ""


class ChatContext(BodyModel):
    model_config = _Loose
    chatType: str | None = None


class ChatBody(BodyModel):
    """``POST /chat``, the older chat: one message with the history the client keeps."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["message"]})
    message: NonBlank = Field(default=None, description=f"at most {MAX_MESSAGE_CHARS:,} characters once stripped")
    ward: str | None = Field(default=None, description='default "Unknown"')
    context: ChatContext | None = None
    history: list[ChatTurn] = Field(default_factory=list)


# --- responses -----------------------------------------------------------------------------------------------


class ConversationCreated(BaseModel):
    session_id: str = Field(pattern=SESSION_ID)
    ward: str
    chat_type: ChatType
    language: Language
    created_at: Stamp


class Message(BaseModel):
    """One message of a session; a reply also carries its provider, model, confidence, sources and cost."""

    model_config = _Open
    role: Literal["user", "assistant"]
    content: str
    timestamp: Stamp


class Conversation(BaseModel):
    session_id: str = Field(pattern=SESSION_ID)
    ward: str
    chat_type: ChatType
    language: Language
    created_at: Stamp
    last_activity: Stamp
    message_count: int = Field(ge=0)
    messages: list[Message]


class ConversationDeleted(BaseModel):
    status: Literal["conversation_deleted"]
    session_id: str
    timestamp: Stamp


class MessageAdded(BaseModel):
    status: Literal["message_added"]
    session_id: str
    timestamp: Stamp


class ConversationSummary(BaseModel):
    id: str = Field(pattern=SESSION_ID)
    title: str
    ward: str
    chat_type: ChatType
    language: Language
    created_at: Stamp
    last_updated: Stamp
    message_count: int = Field(ge=0)
    last_message: str
    status: Literal["active"]


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]
    total: int = Field(ge=0)
    ward_filter: str | None
    status: Literal["success"]


class ChatReplyContext(BaseModel):
    model_config = _Open
    ward: str
    confidence: float | None = Field(ge=0, le=1)
    type: ChatType
    model_used: str | None
    provider: str | None


class ChatAction(BaseModel):
    type: str
    label: str


class ChatReply(BaseModel):
    """``POST /chat``: the answer (empty, with ``error``, when no provider could answer)."""

    model_config = _Open
    response: str
    context: ChatReplyContext
    actions: list[ChatAction]
    error: str | None = None
    timestamp: Stamp

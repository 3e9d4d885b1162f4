"""The HTTP API as a FastAPI router: the current user's sessions, and calls to agents.

Every route takes the user from ``authenticate``, a FastAPI dependency of the application
returning the user id; sessions of other users are not found (404), exactly like sessions
that do not exist. The runtime is the application's: start it in the application's
lifespan (``async with runtime: yield``); until then the routes answer 503.

A remote agent (``role: remote``, a :class:`~aixgo.agent.SessionHost`) keeps its sessions in
the store of the node that runs it: nothing is read or written in this runtime's store for
it. Its calls pass the user and the session id on to the node, which enforces ownership, and
answer with the session the node ran the turn in; its history is read through the node
(``GET /sessions/{id}/messages?agent=NAME``); the other session routes, which the node does
not offer, answer a typed error (see :func:`create_router`).
"""

import json
from contextlib import aclosing
from typing import Annotated, Any, Protocol, runtime_checkable

from aixgo.errors import AgentError, InvalidArgument, InvalidMessage
from aixgo.events import Reply, SessionOpened
from aixgo.identifiers import validate_id, validate_name
from aixgo.message import Message
from aixgo.runtime import Runtime
from aixgo.session import Checkpoint, SessionInfo
from aixgo.session.session import Session
from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from aixgo_web import _stream
from aixgo_web._errors import route_class
from aixgo_web.schemas import (
    EVENT_STREAM_SCHEMA,
    ID_PATTERN,
    AgentInfo,
    AgentList,
    CallReply,
    CallRequest,
    CheckpointList,
    CheckpointRequest,
    ErrorBody,
    MessageList,
    NewSession,
    RestoreReply,
    SessionPage,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_TAIL",
    "Authenticate",
    "EventStream",
    "HostedHistory",
    "create_router",
]

#: Request bodies larger than this are refused (413) before they are read whole.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: The most messages one request for a session's tail returns.
MAX_TAIL = 1000

# Ids are documented with their pattern and checked by aixgo itself, so a malformed one is
# answered as InvalidIdentifier, like everywhere else in aixgo.
SessionId = Annotated[str, Path(json_schema_extra={"pattern": ID_PATTERN})]
CheckpointId = Annotated[str, Path(json_schema_extra={"pattern": ID_PATTERN})]

#: A FastAPI dependency (function or class, sync or async, with dependencies of its own)
#: returning the current user's id, or raising ``HTTPException(401)``.
Authenticate = Any

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in {
        404: "not found (or not the current user's)",
        413: "the request body is too large",
        422: "invalid request",
        503: "the runtime is not running or the store is unavailable",
        504: "the store did not answer in time",
    }.items()
}
_STREAM_OK: dict[str, Any] = {
    "description": "the call's events as Server-Sent Events",
    "content": {"text/event-stream": {"schema": EVENT_STREAM_SCHEMA}},
}
_CALL_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": ErrorBody, "description": "another turn is running on the session"},
    502: {"model": ErrorBody, "description": "the agent failed"},
    504: {"model": ErrorBody, "description": "the agent or the store did not answer in time"},
}


@runtime_checkable
class HostedHistory(Protocol):
    """A remote agent that reads its sessions' history where they are kept
    (:class:`aixgo_runtime_grpc.RemoteAgent`, through the node's ``Tail`` call)."""

    async def tail(
        self, session: str, *, user: str | None = None, last: int | None = None
    ) -> list[Message]:
        """The last ``last`` messages of ``session``, which must be ``user``'s."""
        ...


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response (FastAPI's own SSE class is for routes that yield;
    this route must answer errors before its first event with a status code)."""

    media_type = "text/event-stream"


def create_router(
    runtime: Runtime,
    *,
    authenticate: Authenticate,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> APIRouter:
    """The API for ``runtime``, to include in an application:
    ``app.include_router(create_router(rt, authenticate=current_user), prefix="/api")``.

    ``authenticate`` is a dependency returning the user id (see :mod:`aixgo_web.auth`);
    request bodies over ``max_body_bytes`` are refused with 413 before they are read whole.
    """
    api = APIRouter(route_class=route_class(max_body_bytes), responses=_ERRORS)

    async def owned(session_id: str, user: str) -> Session:
        return await runtime.session_manager.get(session_id, user_id=user)

    def hosted(agent: str) -> bool:
        """Whether ``agent`` keeps its sessions where it runs (an unknown one: 404)."""
        return runtime.hosted(validate_name(agent, "agent name"))

    def kept_elsewhere(agent: str, what: str) -> InvalidArgument:
        return InvalidArgument(
            f"agent {agent!r} keeps its sessions on the node that runs it, not here, so "
            f"{what}; call it without a session_id to continue your latest session there "
            "(the reply names it), or with that session_id to continue it"
        )

    @api.get("/agents", response_model=AgentList, tags=["agents"])
    async def list_agents(user: Annotated[str, Depends(authenticate)]) -> AgentList:
        """The agents this runtime serves."""
        return AgentList(
            items=[
                AgentInfo(name=n, session_mode=runtime.session_mode(n), hosted=hosted(n))
                for n in runtime.list()
            ]
        )

    @api.get("/sessions", response_model=SessionPage, tags=["sessions"])
    async def list_sessions(
        user: Annotated[str, Depends(authenticate)],
        agent: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
    ) -> SessionPage:
        """The current user's sessions, most recently updated first (sessions kept here:
        a remote agent's are on its node, and naming one answers 422)."""
        # An agent not served here lists what the store holds for it, as it always did.
        if agent is not None and agent in runtime.list() and hosted(agent):
            raise kept_elsewhere(agent, "they cannot be listed here")
        page = await runtime.session_manager.list(
            agent=agent, user_id=user, limit=limit, cursor=cursor
        )
        return SessionPage(items=page.items, next_cursor=page.next_cursor)

    @api.post("/sessions", response_model=SessionInfo, status_code=201, tags=["sessions"])
    async def create_session(
        body: NewSession, user: Annotated[str, Depends(authenticate)]
    ) -> SessionInfo:
        """Start a new, empty session of the current user with an agent (not a remote
        agent: its sessions are started on its node, by a call; 422)."""
        # An agent this runtime does not serve: 404, and nothing is made.
        if hosted(body.agent):
            raise kept_elsewhere(body.agent, "a session cannot be started for it here")
        s = await runtime.session_manager.create(body.agent, user_id=user, metadata=body.metadata)
        return await s.info()

    @api.get("/sessions/{session_id}", response_model=SessionInfo, tags=["sessions"])
    async def session_info(
        session_id: SessionId, user: Annotated[str, Depends(authenticate)]
    ) -> SessionInfo:
        """A session's summary."""
        return await (await owned(session_id, user)).info()

    @api.delete("/sessions/{session_id}", status_code=204, tags=["sessions"])
    async def delete_session(
        session_id: SessionId, user: Annotated[str, Depends(authenticate)]
    ) -> Response:
        """Delete a session with its messages and checkpoints."""
        await runtime.session_manager.delete(session_id, user_id=user)
        return Response(status_code=204)

    @api.get("/sessions/{session_id}/messages", response_model=MessageList, tags=["sessions"])
    async def session_messages(
        session_id: SessionId,
        user: Annotated[str, Depends(authenticate)],
        last: Annotated[int, Query(ge=0, le=MAX_TAIL)] = 100,
        agent: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    ) -> MessageList:
        """The last ``last`` messages of a session's history, oldest first. With ``agent``,
        the session must be that agent's; a remote agent's session is read from its node."""
        if agent is not None and hosted(agent):
            host = runtime.get(agent)
            if not isinstance(host, HostedHistory):
                raise kept_elsewhere(agent, "its history cannot be read here")
            validate_id(session_id)
            if last == 0:  # the node's Tail reads the whole history for 0
                await host.tail(session_id, user=user, last=1)  # still 404 for a wrong id
                return MessageList(items=[])
            return MessageList(items=await host.tail(session_id, user=user, last=last))
        s = await owned(session_id, user)
        if agent is not None and s.agent != agent:
            raise InvalidArgument(f"session {session_id!r} belongs to agent {s.agent!r}, "
                                  f"not {agent!r}")  # fmt: skip
        return MessageList(items=await s.get_messages(last=last))

    @api.get(
        "/sessions/{session_id}/checkpoints", response_model=CheckpointList, tags=["checkpoints"]
    )
    async def list_checkpoints(
        session_id: SessionId, user: Annotated[str, Depends(authenticate)]
    ) -> CheckpointList:
        """A session's checkpoints, oldest first."""
        return CheckpointList(items=await (await owned(session_id, user)).list_checkpoints())

    @api.post(
        "/sessions/{session_id}/checkpoints",
        response_model=Checkpoint,
        status_code=201,
        tags=["checkpoints"],
    )
    async def create_checkpoint(
        session_id: SessionId,
        user: Annotated[str, Depends(authenticate)],
        body: CheckpointRequest | None = None,
    ) -> Checkpoint:
        """Record the session's current history as a checkpoint."""
        s = await owned(session_id, user)
        return await s.checkpoint(label=body.label if body is not None else None)

    @api.post(
        "/sessions/{session_id}/checkpoints/{checkpoint_id}/restore",
        response_model=RestoreReply,
        tags=["checkpoints"],
    )
    async def restore_checkpoint(
        session_id: SessionId,
        checkpoint_id: CheckpointId,
        user: Annotated[str, Depends(authenticate)],
    ) -> RestoreReply:
        """Make the history what it was at the checkpoint; nothing is destroyed (restoring
        to the returned ``undo`` checkpoint undoes it)."""
        s = await owned(session_id, user)
        return RestoreReply(undo=await s.restore(checkpoint_id))

    async def prepare(agent: str, body: CallRequest, user: str) -> tuple[Message, str | None]:
        """The input message, and the session the call continues (the user's latest with
        the agent when none is named; ``None`` for a stateless agent)."""
        try:
            extra = {"id": body.id} if body.id is not None else {}
            message = Message.user(body.content, **extra)
        except ValidationError as exc:
            raise InvalidMessage(f"the message is invalid: {exc.errors()[0]['msg']}") from None
        # An unknown agent: 404 before anything is read or written.
        if hosted(agent) or runtime.session_mode(agent) == "disabled":
            # A remote agent's node finds (or checks) the user's session itself.
            return message, body.session_id
        if body.session_id is not None:
            return message, (await owned(body.session_id, user)).id
        return message, (await runtime.session_manager.get_or_create(agent, user)).id

    @api.post("/agents/{agent}/call", response_model=CallReply, tags=["agents"],
              responses=_CALL_ERRORS)  # fmt: skip
    async def call_agent(
        agent: str, body: CallRequest, user: Annotated[str, Depends(authenticate)]
    ) -> CallReply:
        """Send a message to an agent and wait for its reply (stored in the session)."""
        message, session_id = await prepare(agent, body, user)
        if hosted(agent) and runtime.session_mode(agent) == "enabled":
            return await call_hosted(agent, message, user, session_id)
        out = await runtime.call(agent, message, user=user, session=session_id)
        return CallReply(session_id=session_id, message=out)

    async def call_hosted(
        agent: str, message: Message, user: str, session_id: str | None
    ) -> CallReply:
        """A remote agent's turn, consumed to its reply: its stream names the session the
        node ran it in (a plain call's reply does not say)."""
        opened = session_id
        events = runtime.stream(agent, message, user=user, session=session_id,
                                session_event=True)  # fmt: skip
        async with aclosing(events):
            async for event in events:
                if isinstance(event, SessionOpened):
                    opened = event.session_id
                elif isinstance(event, Reply):
                    return CallReply(session_id=opened, message=event.message)
        raise AgentError(f"agent {agent!r} ended its turn without a reply", agent=agent,
                         session_id=opened)  # fmt: skip

    # Response, whose media type is None: the 200 is documented as an event stream alone
    # and the errors as JSON (EventStream here would document the errors as streams too).
    @api.post("/agents/{agent}/stream", response_class=Response, tags=["agents"],
              responses={**_CALL_ERRORS, 200: _STREAM_OK})  # fmt: skip
    async def stream_agent(
        agent: str, body: CallRequest, user: Annotated[str, Depends(authenticate)]
    ) -> EventStream:
        """Send a message to an agent and receive the call's events as Server-Sent Events:
        ``session`` first (``{"session_id": ...}``), then the runtime's events (``delta``,
        ``step``, ``reply``), or ``error`` (``{"error": {"type", "message", "status"}}``)
        if the call fails once streaming has begun. A call refused before its first event
        (a running turn under ``turn_policy: reject``, an unknown session) is answered with
        an HTTP error status instead."""
        message, session_id = await prepare(agent, body, user)
        # A remote agent's node names the session it runs the turn in, first.
        named = hosted(agent) and runtime.session_mode(agent) == "enabled"
        events = _stream.call_events(runtime, agent, message, user=user, session=session_id,
                                     session_event=named)  # fmt: skip
        # The first event is awaited here, so a call refused before it starts gets a
        # real status code rather than a 200 stream holding an error.
        first = await anext(events)
        if named and first[0] == "session":
            session_id, first = json.loads(first[1])["session_id"], await anext(events)
        opening = [("session", json.dumps({"session_id": session_id})), first]
        return EventStream(
            _stream.encoded(opening, events),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api

"""An existing FastAPI application that adds aixgo: its own lifespan runs the aixgo runtime,
its own login decides who the user is, and aixgo's routes and chat page answer as that user.

Serve it and open http://127.0.0.1:8000/ in a browser::

    python examples/fastapi-app/main.py --serve          # --port 8000 --host 127.0.0.1

Run without ``--serve`` (as ``uvx nox -s demo`` does) it checks itself in-process and exits.
Sessions live in the embedded default store (``$AIXGO_SESSION_URL``, else the file store under
``$AIXGO_HOME``, else ``~/.aixgo/sessions``). The model is the offline scripted one unless
``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set (then ``openai:$AIXGO_DEMO_MODEL``).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import parse_qs

import aixgo_web
from aixgo import Runtime, plugins
from aixgo.identifiers import validate_name
from aixgo.session import default_session_url
from aixgo_agent_react import ReActAgent
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# -- the application's own authentication -------------------------------------------------
# A toy login: a name gets a random token, kept in memory, sent back as an HttpOnly cookie
# (for the browser) or as a bearer token (for API clients). A real app checks a password or
# an identity provider here; aixgo only ever sees the user id the dependency returns.
TOKENS: dict[str, str] = {}
COOKIE = "demo_token"
bearer = HTTPBearer(auto_error=False)


def login(user: str) -> str:
    validate_name(user, "user name")
    token = secrets.token_urlsafe(32)
    TOKENS[token] = user
    return token


def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The app's auth dependency, handed to aixgo as ``authenticate``."""
    token = credentials.credentials if credentials else request.cookies.get(COOKIE)
    user = TOKENS.get(token or "")
    if user is None:
        raise HTTPException(
            401, "log in first: POST /login", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


# -- aixgo --------------------------------------------------------------------------------


def store_url() -> str:
    url = default_session_url()  # $AIXGO_SESSION_URL, else the embedded file store
    if url.partition("://")[0] not in plugins.backend_schemes():
        return "memory://"
    return url


def model() -> str:
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return "openai:" + os.environ.get("AIXGO_DEMO_MODEL", "gpt-4o-mini")
    return "scripted:echo"


runtime = Runtime(session_manager=store_url(), timeout=120)
runtime.register("assistant", ReActAgent(model(), system_prompt="You are concise."))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The app's own start-up and shutdown go here too (pools, caches, ...). A mounted app's
    # lifespan never runs, so the runtime is started here, by the app that mounts it.
    async with runtime:
        yield


app = FastAPI(title="My app, with aixgo", lifespan=lifespan)
# The API inside this app's own OpenAPI schema (/docs), under this app's prefix...
app.include_router(aixgo_web.create_router(runtime, authenticate=current_user), prefix="/api/ai")
# ...and the chat page (with an API of its own beside it) under /chat/.
app.mount("/chat", aixgo_web.create_app(runtime, authenticate=current_user))


@app.get("/", response_class=HTMLResponse)
async def home(request: Request) -> str:
    user = TOKENS.get(request.cookies.get(COOKIE, ""))
    if user:
        return f'<p>Hello {html.escape(user)}. <a href="/chat/">Open the chat</a>.</p>'
    return (
        '<form method="post" action="/login"><label>Name <input name="user" required>'
        "</label> <button>Log in</button></form>"
    )


@app.post("/login")
async def login_route(request: Request) -> Response:
    """Log in with a form (``user=NAME``): a cookie for the browser, the token as JSON for
    an API client that asks for JSON."""
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = login(form.get("user", [""])[0].strip())
    if "application/json" in request.headers.get("accept", ""):
        return Response(f'{{"token": "{token}"}}', media_type="application/json")
    response = RedirectResponse("/chat/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


# -- running it ---------------------------------------------------------------------------


async def self_check() -> None:
    """What a browser and an API client would do, in-process: log in, chat, and see that
    another user cannot reach the conversation."""
    import httpx  # the check's client only; serving needs none

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as c,
    ):
        form = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        alice = (await c.post("/login", content="user=alice", headers=form)).json()["token"]
        bob = (await c.post("/login", content="user=bob", headers=form)).json()["token"]
        as_alice = {"Authorization": f"Bearer {alice}"}
        r = await c.post("/api/ai/agents/assistant/call", json={"content": "Hi!"}, headers=as_alice)
        r.raise_for_status()
        session, reply = r.json()["session_id"], r.json()["message"]["content"]
        print(f"alice -> assistant: Hi!\nassistant -> alice: {reply}")
        as_bob = {"Authorization": f"Bearer {bob}"}
        theirs = await c.get(f"/api/ai/sessions/{session}", headers=as_bob)
        kind = theirs.json()["error"]["type"]
        print(f"bob asks for alice's session: {theirs.status_code} {kind}")
        anonymous = await c.get("/api/ai/sessions")
        page = await c.get("/chat/", headers=as_alice)
        if theirs.status_code != 404 or anonymous.status_code != 401 or "chat.js" not in page.text:
            raise SystemExit("the app did not answer as it should")
        print("the chat page is served at /chat/")
        await c.delete(f"/api/ai/sessions/{session}", headers=as_alice)  # leave nothing behind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="serve over HTTP with uvicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if not args.serve:
        asyncio.run(self_check())
        return
    import uvicorn

    print(f"open http://{args.host}:{args.port}/ (Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

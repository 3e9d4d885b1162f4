"""``aixgo web``: serve the agents of a config file over HTTP, with the chat page, through
uvicorn. Added to the ``aixgo`` command line by this package's plugin."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

__all__ = ["parse_listen", "web"]


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) as a host and a port.

    >>> parse_listen("127.0.0.1:8000"), parse_listen("[::1]:0")
    (('127.0.0.1', 8000), ('::1', 0))
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{listen!r} is not HOST:PORT, e.g. 127.0.0.1:8000")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("web")
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False, path_type=Path),
              default="aixgo.yaml", show_default=True, help="YAML config.")  # fmt: skip
@click.option("--listen", default="127.0.0.1:8000", show_default=True, help="HOST:PORT.")
@click.option("--user", "-u", envvar="AIXGO_USER", default="local", show_default=True,
              help="Serve every request as this user (default: $AIXGO_USER); loopback "
                   "addresses only.")  # fmt: skip
@click.option("--user-header", metavar="NAME",
              help="Take the user from this request header, set by a trusted reverse proxy "
                   "that authenticates users (e.g. X-Forwarded-User).")  # fmt: skip
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Let browsers on ORIGIN call the API (repeatable; default: none).")  # fmt: skip
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1024 * 1024,
              show_default=True, help="Refuse larger request bodies (413).")  # fmt: skip
def web(
    config: Path,
    listen: str,
    user: str,
    user_header: str | None,
    cors_origins: tuple[str, ...],
    max_body_bytes: int,
) -> None:
    """Serve the config's agents over HTTP: the chat page at /, the API under /api, its
    OpenAPI schema at /openapi.json. Stops on Ctrl-C (SIGINT) or SIGTERM."""
    host, port = parse_listen(listen)
    if user_header is not None:
        from aixgo.errors import InvalidArgument

        from aixgo_web.auth import header_user

        try:
            header_user(user_header)
        except InvalidArgument as exc:
            # Checked before anything else: an empty name must never fall back to --user.
            raise click.BadParameter(str(exc), param_hint="--user-header") from None
    if user_header is None and not _loopback(host):
        raise click.UsageError(
            f"--user serves every request as {user!r}, so it is for loopback addresses only; "
            f"to serve {host} put an authenticating proxy in front and pass --user-header"
        )
    # Imported here: listing aixgo's commands must not load the web stack.
    import uvicorn
    from aixgo.runtime import Runtime

    from aixgo_web.app import create_app
    from aixgo_web.auth import fixed_user, header_user

    rt = Runtime.from_config(config)
    authenticate = header_user(user_header) if user_header is not None else fixed_user(user)
    app = create_app(
        rt, authenticate=authenticate, cors_origins=cors_origins, max_body_bytes=max_body_bytes
    )
    click.echo(f"aixgo web: http://{listen}/ (agents: {', '.join(rt.list()) or 'none'})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)

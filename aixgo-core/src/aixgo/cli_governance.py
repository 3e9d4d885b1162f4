"""``aixgo sessions rekey`` and ``aixgo sessions erase --user``: key rotation and per-user
erasure on any backend.

The keyring comes from ``$AIXGO_ENCRYPTION_KEYS`` (``k1=env:VAR,k2=file:/path``) and
``$AIXGO_ENCRYPTION_ACTIVE`` (:func:`aixgo.crypto.keyring_from_env`); every ``aixgo
sessions`` command uses it, so ``list`` and ``show`` read an encrypted store too.
"""

from __future__ import annotations

import click

from aixgo.cli_progress import ProgressReport
from aixgo.cli_sessions import _run, printable, sessions
from aixgo.errors import ConfigError
from aixgo.session import ErasureReport, RekeyReport, SessionManager, redact_url

__all__ = ["erase_command", "rekey_command"]


@sessions.command("rekey")
@click.option("--batch", default=200, show_default=True, help="Data keys per listing page.")
@click.option("--progress/--no-progress", default=True,
              help="Progress on stderr (the default): a bar with count and rate on a terminal, "
              "one line per batch elsewhere.")  # fmt: skip
@click.pass_obj
def rekey_command(url: str, batch: int, progress: bool) -> None:
    """Move every data key onto the active master key ($AIXGO_ENCRYPTION_ACTIVE).

    Safe while applications run, and to interrupt: run it again to finish. Afterwards the
    old key can be removed from $AIXGO_ENCRYPTION_KEYS.
    """

    display = ProgressReport("rekey", show=progress, unit="data keys", every=1)

    def shown(report: RekeyReport) -> None:
        display.update(report.data_keys, f"{report.rewrapped:,} rewrapped")

    async def work(mgr: SessionManager) -> RekeyReport:
        if mgr.keyring is None:
            raise ConfigError(
                "rekey needs the keyring: set AIXGO_ENCRYPTION_KEYS (e.g. "
                "'k1=env:AIXGO_KEY_K1,k2=env:AIXGO_KEY_K2') and AIXGO_ENCRYPTION_ACTIVE"
            )
        return await mgr.rekey(progress=shown, batch=batch)

    with display:
        report = _run(url, work)
    click.echo(
        f"rekeyed: {report.rewrapped} data key(s) rewrapped, {report.data_keys} seen, "
        f"{report.remaining} left on other keys"
    )


@sessions.command("erase")
@click.option("--user", "user_id", required=True, help="The user whose data is erased.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def erase_command(url: str, user_id: str, yes: bool) -> None:
    """Erase every session, message and checkpoint of a user, and their data keys.

    Safe to run again after an interruption; prints what this run erased.
    """
    if not yes:
        click.confirm(
            f"erase everything of user {printable(user_id)} from {printable(redact_url(url))}?",
            abort=True,
        )

    async def work(mgr: SessionManager) -> ErasureReport:
        return await mgr.erase_user(user_id)

    report = _run(url, work)
    click.echo(
        f"erased: {report.sessions} session(s), {report.messages} message(s), "
        f"{report.checkpoints} checkpoint(s), {report.data_keys} data key(s)"
    )

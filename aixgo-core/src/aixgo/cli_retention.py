"""``aixgo sessions sweep``: apply retention policies (see :mod:`aixgo.session.retention`)."""

from __future__ import annotations

from pathlib import Path

import click

from aixgo.cli_progress import ProgressReport
from aixgo.cli_sessions import _dump, _run, printable
from aixgo.errors import ConfigError
from aixgo.session.manager import SessionManager
from aixgo.session.retention import (
    RetentionPolicy,
    SweepReport,
    policies_from_config,
    sweep,
)

__all__ = ["sweep_command"]


@click.command("sweep")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Take the policies from this YAML file's runtime.retention block.")  # fmt: skip
@click.option("--agent", help="The agent the --idle/--max-age/--keep-last rules apply to.")
@click.option("--idle", help="Delete sessions not updated for longer than this (30d, 12h, 90m).")
@click.option("--max-age", help="Delete sessions created longer ago than this.")
@click.option("--keep-last", type=int, help="Keep only each user's N latest sessions.")
@click.option("--dry-run", is_flag=True, help="Change nothing; report what would be deleted.")
@click.option("--batch", default=500, show_default=True, help="Sessions listed per batch.")
@click.option("--max", "max_deletions", type=int, help="Stop after deleting this many.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr. On a terminal (the default there): a bar with count "
              "and rate. Elsewhere: nothing, or with --progress one line per batch.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def sweep_command(
    url: str,
    config_path: Path | None,
    agent: str | None,
    idle: str | None,
    max_age: str | None,
    keep_last: int | None,
    dry_run: bool,
    batch: int,
    max_deletions: int | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Delete sessions by retention policy, in bounded batches.

    Policies come from --config (runtime.retention: {agent: {idle, max_age, keep_last}})
    or from --agent with --idle/--max-age/--keep-last. Deletions are audited when
    $AIXGO_AUDIT_LOG is set.
    """
    policies = _policies(config_path, agent, idle, max_age, keep_last)
    shown = ProgressReport("sweep", show=progress, unit="sessions examined", every=batch)

    def on_batch(name: str, report: SweepReport) -> None:
        verb = "selected" if report.dry_run else "deleted"
        shown.update(report.examined, f"{printable(name)}: {report.deleted:,} {verb}")

    async def work(mgr: SessionManager) -> SweepReport:
        return await sweep(mgr, policies, dry_run=dry_run, batch=batch,
                           max_deletions=max_deletions, progress=on_batch)  # fmt: skip

    with shown:
        report = _run(url, work)
    if as_json:
        _dump({"dry_run": report.dry_run, "examined": report.examined,
               "deleted": report.deleted, "by_rule": dict(report.by_rule),
               "spared": report.spared, "truncated": report.truncated,
               "session_ids": report.session_ids})  # fmt: skip
        return
    verb = "would delete" if dry_run else "deleted"
    rules = ", ".join(f"{k} {v}" for k, v in sorted(report.by_rule.items())) or "none"
    click.echo(f"{verb} {report.deleted:,} of {report.examined:,} sessions examined "
               f"(by rule: {rules}; spared as used meanwhile: {report.spared})")  # fmt: skip
    if dry_run:
        for sid in report.session_ids:
            click.echo(f"  {printable(sid)}")
    if report.truncated:
        click.echo("stopped at --max; run again to continue")


def _policies(
    config_path: Path | None,
    agent: str | None,
    idle: str | None,
    max_age: str | None,
    keep_last: int | None,
) -> dict[str, RetentionPolicy]:
    rules = {"idle": idle, "max_age": max_age, "keep_last": keep_last}
    if config_path is not None:
        if agent or any(v is not None for v in rules.values()):
            raise click.UsageError("give --config or --agent with rules, not both")
        from aixgo.config import load_config

        config = load_config(config_path)
        block = config.runtime.get("retention")
        if block is None:
            raise ConfigError(f"{config_path}: no runtime.retention block")
        return policies_from_config(block[0], block[1])
    if agent is None or all(v is None for v in rules.values()):
        raise click.UsageError("give --config, or --agent with --idle, --max-age or --keep-last")
    return {agent: RetentionPolicy.from_mapping(rules, "sweep")}

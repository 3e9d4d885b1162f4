"""``aixgo audit``: check an audit log's HMAC chain."""

from __future__ import annotations

import asyncio
import json

import click

from aixgo.cli_sessions import printable

__all__ = ["audit"]


@click.group("audit")
def audit() -> None:
    """Check tamper-evident audit logs (see docs/audit.md).

    \b
    Exit status: 0 the log is intact; 1 a record was modified, deleted, inserted or
    moved (its index is printed), or the log cannot be read; 2 the command line is wrong.
    """


@audit.command("verify")
@click.argument("target", metavar="PATH")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(target: str, as_json: bool) -> None:
    """Verify the audit log PATH (a JSONL file, or an audit sink URL such as
    postgresql://...?table=aixgo_audit) with the key in $AIXGO_AUDIT_KEY (hex)."""
    from aixgo.audit import AuditLog, key_from_env

    log = AuditLog(target, key=key_from_env())

    async def run() -> object:
        try:
            return await log.verify()
        finally:
            await log.sink.close()

    report = asyncio.run(run())
    from aixgo.audit import VerifyReport

    assert isinstance(report, VerifyReport)
    if as_json:
        click.echo(json.dumps({"intact": report.intact, "records": report.records,
                               "first_bad": report.first_bad, "problem": report.problem,
                               "head": report.head}))  # fmt: skip
    elif report.intact:
        click.echo(f"intact: {report.records:,} records; head {report.head or '-'}")
    else:
        click.echo(
            f"TAMPERED: record {report.first_bad} (line {report.records + 1}): "
            f"{printable(report.problem)}; the {report.records:,} records before it are intact"
        )
    if not report.intact:
        raise click.exceptions.Exit(1)

"""Encryption at rest: encrypted vs plain append and tail-100 on each backend, timed
alternately on the same store (:func:`timing.measure_pair`), reported as ratios.

Targets (issue #19): at most 1.3x on file://, 1.1x on redis:// and postgresql://.

    python bench/governance.py [--quick]      # alone; nox -s bench runs it too
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from binascii import b2a_base64
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).parent))

from aixgo import Message
from aixgo.crypto import Keyring
from aixgo.session import SessionManager, open_backend
from timing import Result, measure_pair

HISTORY = 1_000
TARGETS = {"file": 1.3, "redis": 1.1, "postgresql": 1.1}
#: The plain append with the bare cost of sealing added, and the plain one timed with it.
FLOOR, VERSUS_FLOOR = "plain + bare sealing", "(in turns with bare sealing)"


async def measure(name: str, url: str, *, runs: int, budget_s: float) -> list[Result]:
    """Paired append and tail-100 of one store, encrypted vs plain."""
    backend = open_backend(url)
    plain = SessionManager(backend)
    enc = SessionManager(backend, encryption=Keyring({"k1": os.urandom(32)}, active="k1"))
    try:
        sessions = []
        for mgr in (enc, plain):
            s = await mgr.create("bench", user_id="bench-user", metadata={"title": "bench"})
            for _ in range(HISTORY // 500):
                await s.append_messages([Message.user(f"m{i} " + "x" * 200) for i in range(500)])
            sessions.append(s)
        text = "a typical chat message of about a hundred and fifty characters, " * 2
        enc_s, plain_s = sessions
        names = (f"{name} encrypted", f"{name} plain")
        out: list[Result] = []
        out += await measure_pair(
            names,
            "append",
            (
                lambda: enc_s.append_message(Message.user(text)),
                lambda: plain_s.append_message(Message.user(text)),
            ),
            runs=runs,
            budget_s=budget_s,
        )
        aead = AESGCM(os.urandom(32))

        async def bare_sealing() -> None:
            # The least any encrypted append adds to a plain one: the plaintext's JSON, a
            # fresh 96-bit nonce, AES-GCM under associated data and the base64 a JSON store
            # needs. No key lookup, no fingerprint, and the store writes the smaller plaintext
            # record: a lower bound, so the append bound cannot be met if this misses it.
            m = Message.user(text)
            nonce = os.urandom(12)
            sealed = aead.encrypt(nonce, m.model_dump_json().encode(), m.id.encode())
            b2a_base64(nonce + sealed, newline=False)
            await plain_s.append_message(m)

        out += await measure_pair(
            (f"{name} {FLOOR}", f"{name} plain {VERSUS_FLOOR}"),
            "append",
            (bare_sealing, lambda: plain_s.append_message(Message.user(text))),
            runs=runs,
            budget_s=budget_s,
        )
        out += await measure_pair(
            names,
            "tail-100",
            (lambda: enc_s.get_messages(last=100), lambda: plain_s.get_messages(last=100)),
            runs=runs,
            budget_s=budget_s,
            size=HISTORY,
        )
        return out
    finally:
        await backend.close()


def ratios(results: list[Result]) -> list[str]:
    """One line per store and operation: encrypted median / plain median, against target."""
    by = {(r.subject, r.op): r for r in results}
    lines = []
    for (subject, op), r in by.items():
        if subject.endswith(f" {FLOOR}"):
            store = subject.removesuffix(f" {FLOOR}")
            base = by.get((f"{store} plain {VERSUS_FLOOR}", op))
            if base is not None and r.median_us and base.median_us:
                lines.append(f"{store} {op} with bare sealing (floor): "
                             f"{r.median_us / base.median_us:.2f}x")  # fmt: skip
            continue
        if not subject.endswith(" encrypted"):
            continue
        store = subject.removesuffix(" encrypted")
        base = by.get((store + " plain", op))
        if base is None or not r.median_us or not base.median_us:
            continue
        ratio = r.median_us / base.median_us
        target = next((t for k, t in TARGETS.items() if f" {k}://" in store), None)
        verdict = "" if target is None else f" (target <= {target}x: "
        verdict += "" if target is None else ("met)" if ratio <= target else "missed)")
        lines.append(f"{store} {op}: {ratio:.2f}x{verdict}")
    return lines


async def run_all(stores: list[tuple[str, str]], *, runs: int, budget_s: float) -> list[Result]:
    """Every ``(name, url)`` store measured; the ratios printed."""
    results: list[Result] = []
    for name, url in stores:
        print(f"== {name}: encrypted vs plain", flush=True)
        results += await measure(name, url, runs=runs, budget_s=budget_s)
    for line in ratios(results):
        print(line, flush=True)
    return results


def main() -> None:
    import run  # the bench's stores and their cleanup

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    plan = run.QUICK if args.quick else run.FULL
    keep: list[object] = []
    stores = [(s.name, s.url) for s in run.build_subjects(args.quick, keep)
              if isinstance(s, run.AixgoSubject)]  # fmt: skip

    async def go() -> None:
        try:
            await run_all(stores, runs=plan.paired_runs, budget_s=plan.budget_s)
        finally:
            for k in keep:
                k.cleanup()  # type: ignore[attr-defined]
            await run.cleanup()

    asyncio.run(go())


if __name__ == "__main__":
    main()

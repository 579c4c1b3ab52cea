"""``python -m xaynet_sdk.simulation``: N participants for R rounds, one line per round.

    python -m xaynet_sdk.simulation --participants 1000 --model-length 10000 --rounds 3
    python -m xaynet_sdk.simulation --participants 200 --model-length 1000 --rounds 2 --json
    python -m xaynet_sdk.simulation --url http://127.0.0.1:8081 --participants 50 \\
        --model-length 4 --rounds 1 --backend ray

Without ``--url`` a local coordinator sized for N runs in this process. Participant ``i``
sends ``model-length`` copies of ``(i % 1000 + 1) / 1000`` (:class:`ConstantModel`). With
``--json`` each round is one JSON object on stdout (:class:`RoundOutcome`'s fields; a round
that failed has ``"completed": false`` and its ``failure``); otherwise one readable line. Exit
status 0 after R completed rounds, 1 on a timeout or error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Optional

from .runner import RoundOutcome, run_simulation


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m xaynet_sdk.simulation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--participants", type=_positive, required=True)
    p.add_argument("--model-length", type=_positive, required=True)
    p.add_argument("--rounds", type=_positive, required=True)
    p.add_argument("--url", help="an existing coordinator (default: an embedded one)")
    p.add_argument("--workers", type=_positive, help="worker processes or actors (default: cores)")
    p.add_argument("--backend", choices=("multiprocessing", "ray"), default="multiprocessing")
    p.add_argument("--json", action="store_true", help="one JSON object per round")
    p.add_argument("--timeout", type=float, help="seconds for all rounds (default: generous)")
    return p


def _line(o: RoundOutcome) -> str:
    if o.completed is False:
        head = f"round {o.round} (id {o.round_id}) failed: {o.failure}"
    else:
        head = f"round {o.round}" + (f" (id {o.round_id})" if o.round_id is not None else "")
    accepted = f" accepted {o.accepted_updates}," if o.accepted_updates is not None else ""
    late = f" late {o.late_updates}," if o.late_updates is not None else ""
    return (
        f"{head}: {o.sum} sum, {o.update} update, {o.idle} idle;{accepted}{late}"
        f" sent {o.sent_updates} updates; {o.seconds:.1f} s, {o.cpu_seconds:.1f} s CPU"
    )


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def report(outcome: RoundOutcome) -> None:
        if args.json:
            print(json.dumps(outcome.to_json()), flush=True)
        else:
            print(_line(outcome), flush=True)

    if not args.json:
        where = args.url or "an embedded coordinator"
        print(
            f"{args.participants} participants, model length {args.model_length},"
            f" {args.rounds} rounds on {where} ({args.backend})",
            flush=True,
        )
    try:
        result = run_simulation(
            participants=args.participants,
            rounds=args.rounds,
            model_length=args.model_length,
            url=args.url,
            workers=args.workers,
            backend=args.backend,
            on_round=report,
            timeout=args.timeout,
        )
    except (TimeoutError, RuntimeError, ValueError, OSError) as e:
        print(f"simulation failed: {e}", file=sys.stderr)
        return 1
    if not args.json:
        print(
            f"started in {result.startup_seconds:.2f} s; requests {result.requests};"
            f" errors {result.errors or 'none'}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

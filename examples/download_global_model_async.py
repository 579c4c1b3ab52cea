"""An AsyncParticipant that only downloads the global model: it never sets a local model, and
keeps the latest global model, optionally in a JSON file (--save).

    python examples/download_global_model_async.py --save global_model.json
    python examples/download_global_model_async.py --url http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _common

from xaynet_sdk import spawn_async_participant


def main(args: argparse.Namespace) -> None:
    with _common.coordinator(args, simulated=9) as url:
        global_models = _common.GlobalModels(args)
        participant, new_global_model = spawn_async_participant(url)
        try:
            while not global_models.done:
                if not new_global_model.wait(min(global_models.remaining(), 1.0)):
                    continue
                global_model = participant.get_global_model()
                if global_model is not None and args.save is not None:
                    args.save.write_text(json.dumps(global_model))
                global_models.received(global_model)
        finally:
            participant.stop()
    if args.save is not None:
        _common.say(f"the latest global model is in {args.save}")


def cli() -> argparse.ArgumentParser:
    parser = _common.parser(__doc__)
    parser.add_argument("--save", type=Path, help="write each global model to this JSON file")
    return parser


if __name__ == "__main__":
    _common.run(main, cli())

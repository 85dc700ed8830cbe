"""The attribfast command line."""

from __future__ import annotations

import argparse
import sys


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from . import runtime_info
    from .session import Session

    info = runtime_info()
    print(f"ONNX Runtime {info.ort_version} (C API {info.api_version}) from {info.library_path}")
    print(f"providers listed: {', '.join(info.available_providers)}")
    print(f"providers usable: {', '.join(info.usable_providers)}")
    for provider, why in info.unusable_reasons.items():
        print(f"  {provider} unusable: {why}")
    # Run a tiny model through the core: y = relu(x).
    from ._probe import RELU_MODEL

    (y,) = Session(RELU_MODEL).run({"x": np.array([-1.0], np.float32)})
    print(f"tiny model ran: relu(-1) = {float(y[0])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attribfast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the runtime, its providers, and run a tiny model").set_defaults(
        run=_info
    )
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

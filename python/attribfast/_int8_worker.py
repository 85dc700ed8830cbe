"""The child process of attribfast.int8.quantize: runs ONNX Runtime's quantizer on each graph.

Kept apart so that only this process imports the onnxruntime module (and its own copy of ONNX
Runtime); nothing in the package imports this module.
"""

from __future__ import annotations

import json
import sys


def _main(request: str) -> int:
    """The child process: quantizes each job's graph (imports onnxruntime's Python module)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process the graph (shape inference) we do not need
    options = json.loads(request)
    weight_type = QuantType.QInt8 if options["weight_type"] == "int8" else QuantType.QUInt8
    for job in options["jobs"]:
        # A ModelProto, not the path: from a path, the quantizer writes a shape-inferred copy into
        # the source bundle's directory.
        model = onnx.load(job["source"])
        quantize_dynamic(
            model,
            job["output"],
            per_channel=options["per_channel"],
            weight_type=weight_type,
            use_external_data_format=job["external"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))

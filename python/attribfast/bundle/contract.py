"""The graph contract, checked at load: each graph file declares the inputs and outputs that the
manifest promises, and the forward and gradient graphs have the inputs their task feeds.

A mismatch would otherwise surface at the first run, as an ONNX Runtime error about a missing
feed, or worse as a run that ignores a feed.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BundleContractError
from .onnx_header import OnnxHeaderError, read_signature

INTEGER = ("int64",)
FLOAT = ("float32", "float16")


def task_contract(task: str) -> dict[str, tuple[list[str], list[str]]]:
    """Graph name -> (inputs in order, required outputs) that the engine feeds and reads."""
    from ..tasks import get_task

    targets = list(get_task(task).target_inputs)
    return {
        "forward": (["input_ids", "attention_mask", *targets], ["scores"]),
        "gradient": (["inputs_embeds", "attention_mask", *targets], ["scores", "embeds_grad"]),
    }


def check_graphs(task: str, graphs: dict, paths: dict[str, Path]) -> None:
    """BundleContractError naming the graph and the input or output at fault."""
    contract = task_contract(task)
    for name, declared in graphs.items():
        inputs, outputs = declared["inputs"], declared["outputs"]
        if name in contract:
            want_inputs, want_outputs = contract[name]
            if inputs != want_inputs:
                raise BundleContractError(
                    f"graph {name}: the manifest declares inputs {inputs}, but a {task} bundle's {name} "
                    f"graph takes {want_inputs}"
                )
            missing = [o for o in want_outputs if o not in outputs]
            if missing:
                raise BundleContractError(f"graph {name}: the manifest declares no output {missing[0]!r}")
        _check_file(name, paths[name], inputs, outputs)


def _check_file(name: str, path: Path, inputs: list[str], outputs: list[str]) -> None:
    try:
        signature = read_signature(path)
    except (OnnxHeaderError, OSError) as e:
        raise BundleContractError(f"graph {name} ({path.name}) is not a readable ONNX model: {e}") from None
    actual = list(signature.inputs)
    if sorted(actual) != sorted(inputs):
        extra = [i for i in actual if i not in inputs]
        absent = [i for i in inputs if i not in actual]
        detail = f"it also takes {extra}" if extra else f"it lacks {absent}"
        raise BundleContractError(
            f"graph {name} ({path.name}) does not match the manifest's inputs {inputs}: {detail}"
        )
    absent = [o for o in outputs if o not in signature.outputs]
    if absent:
        raise BundleContractError(
            f"graph {name} ({path.name}) has no output {absent[0]!r} (its outputs: {list(signature.outputs)})"
        )
    for feed, kind in signature.inputs.items():
        expected = FLOAT if feed == "inputs_embeds" else INTEGER if feed in ("input_ids", "attention_mask") else None
        if expected and kind not in expected:
            raise BundleContractError(
                f"graph {name} ({path.name}): input {feed!r} is {kind}, expected {' or '.join(expected)}"
            )
    for output in outputs:
        if output in ("scores", "embeds_grad") and signature.outputs[output] not in FLOAT:
            raise BundleContractError(
                f"graph {name} ({path.name}): output {output!r} is {signature.outputs[output]}, expected a float"
            )

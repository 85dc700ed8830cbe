"""A graph's declared inputs and outputs, read from the ONNX protobuf without loading the model.

Only the few fields needed are decoded; weights are skipped by their length prefix, so reading a
multi-GB graph costs a few seeks. Field numbers are those of onnx.proto (ModelProto.graph = 7;
GraphProto.initializer = 5, input = 11, output = 12; ValueInfoProto.name = 1, type = 2;
TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1; TensorProto.name = 8).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

# onnx.TensorProto.DataType values the contract cares about, and their names for messages.
ELEMENT_TYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64", 16: "bfloat16"}


class OnnxHeaderError(ValueError):
    """The file is not a readable ONNX protobuf."""


@dataclass(frozen=True)
class GraphSignature:
    inputs: dict[str, str]  # name -> element type name ("float32", "int64", ... or "other")
    outputs: dict[str, str]


def read_signature(path: str | os.PathLike) -> GraphSignature:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise OnnxHeaderError("the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return signature_of(data)


def signature_of(data) -> GraphSignature:
    """The signature of a serialized ModelProto (bytes or a memory map)."""
    graph = None
    for field, wire, value in _fields(data, 0, len(data)):
        if field == 7 and wire == 2:
            graph = value
    if graph is None:
        raise OnnxHeaderError("no graph in the model")
    initializers, inputs, outputs = set(), {}, {}
    for field, wire, value in _fields(data, *graph):
        if wire != 2:
            continue
        if field == 5:
            initializers.add(_string_field(data, value, 8))
        elif field in (11, 12):
            name = _string_field(data, value, 1)
            (inputs if field == 11 else outputs)[name] = _element_type(data, value)
    # Old IR versions list initializers among the inputs; they are weights, not feeds.
    return GraphSignature({k: v for k, v in inputs.items() if k not in initializers}, outputs)


def _element_type(data, span) -> str:
    for field, wire, type_span in _fields(data, *span):
        if field == 2 and wire == 2:
            for f2, w2, tensor in _fields(data, *type_span):
                if f2 == 1 and w2 == 2:
                    for f3, w3, elem in _fields(data, *tensor):
                        if f3 == 1 and w3 == 0:
                            return ELEMENT_TYPES.get(elem, "other")
    return "other"


def _string_field(data, span, number: int) -> str:
    for field, wire, value in _fields(data, *span):
        if field == number and wire == 2:
            try:
                return bytes(data[value[0] : value[1]]).decode("utf-8")
            except UnicodeDecodeError:
                raise OnnxHeaderError("a name is not UTF-8") from None
    return ""


def _fields(data, start: int, end: int):
    """(field number, wire type, value) in [start, end): varints as ints, length-delimited as spans."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise OnnxHeaderError(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = _varint(data, pos, end)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            value, pos = (pos, pos + length), pos + length
        else:
            raise OnnxHeaderError(f"unsupported wire type {wire} at byte {pos}")
        if pos > end:
            raise OnnxHeaderError("a field runs past the end of its message (truncated file?)")
        yield field, wire, value


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise OnnxHeaderError(f"bad varint at byte {pos}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7

"""A serialized one-node ONNX model (y = Relu(x), float[1]) for smoke checks."""

RELU_MODEL = bytes.fromhex(
    "08083a370a0c0a0178120179220452656c75120570726f62655a0f0a0178120a"
    "0a08080112040a020801620f0a0179120a0a08080112040a02080142040a0010"
    "0d"
)

"""The exchange test's third reader: Python's standard protobuf package,
with code protoc generates from proto/parml.proto at test time, parses the
writer's model file and finds the writer's parameters, bit for bit.

Usage: python3 read_with_protobuf.py PROTO_DIR MODEL_PATH PARAMS_PATH
"""

import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np


def main(proto_dir: str, model_path: str, params_path: str) -> None:
    with tempfile.TemporaryDirectory() as gen:
        subprocess.run(["protoc", f"--python_out={gen}", f"-I{proto_dir}", f"{proto_dir}/parml.proto"], check=True)
        sys.path.insert(0, gen)
        import parml_pb2

        data = Path(model_path).read_bytes()
        model = parml_pb2.Model()
        model.ParseFromString(data)
    assert model.magic == "parml.model", model.magic
    assert model.format_version == 2, model.format_version
    # The crc32 field covers every byte before it and is the last field.
    assert model.crc32 == zlib.crc32(data[:-5]), (model.crc32, zlib.crc32(data[:-5]))
    kinds = [layer.kind_name for layer in model.layers]
    assert kinds == ["linear", "gelu", "residual", "layer_norm", "linear", "tanh", "dropout", "linear"], kinds
    # Format 2: attributes by name, typed (the map is keyed by attribute name).
    first = model.layers[0].attributes
    assert set(first) == {"in_features", "out_features", "bias"}, dict(first)
    assert first["bias"].WhichOneof("value") == "bool_value" and first["bias"].bool_value
    assert model.layers[0].kind == parml_pb2.Layer.KIND_UNSPECIFIED
    norm = model.layers[3].attributes
    assert norm["features"].int_value == model.layers[0].attributes["out_features"].int_value
    assert abs(norm["eps"].float_value - 1e-5) < 1e-12, norm["eps"]
    assert [layer.depth for layer in model.layers] == [0, 0, 0, 1, 1, 1, 1, 0]
    tensors = []
    for layer in model.layers:
        for t in layer.parameters:
            assert t.dtype == parml_pb2.Tensor.FLOAT32
            a = np.frombuffer(t.data, dtype="<f4")
            assert a.size == int(np.prod(t.dims)), (t.name, list(t.dims), a.size)
            tensors.append(a.reshape(tuple(t.dims)))
    flat = np.concatenate([a.ravel() for a in tensors])
    want = np.fromfile(params_path, dtype="<f4")
    assert flat.tobytes() == want.tobytes(), "the parameters protobuf finds differ from the writer's"
    names = [t.name for layer in model.layers for t in layer.parameters]
    print(f"protobuf {parml_pb2.DESCRIPTOR.name}: {len(model.layers)} layers, {len(tensors)} tensors "
          f"({', '.join(names)}), {flat.size} parameters equal to the writer's")


if __name__ == "__main__":
    main(*sys.argv[1:])

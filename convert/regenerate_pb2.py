"""Regenerates caffe_pb2.py from caffe.proto with the protoc that grpcio-tools bundles.

Development tool only: the converter imports the checked-in caffe_pb2.py and needs just the
protobuf runtime. tests/convert/test_caffe_io.py checks that the checked-in file is current.
"""

import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent


def generate_pb2_source() -> str:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={out}", "caffe.proto"],
            check=True,
            cwd=HERE,
        )
        return (pathlib.Path(out) / "caffe_pb2.py").read_text()


if __name__ == "__main__":
    (HERE / "caffe_pb2.py").write_text(generate_pb2_source())
    print(f"wrote {HERE / 'caffe_pb2.py'}")

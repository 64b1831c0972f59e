#!/bin/sh
# Regenerates sd_client/proto/*_pb2.py from the .proto files beside them (the generated files are committed, so users
# never need this). Generated with grpcio-tools 1.85.1 (libprotoc 35.1 = protobuf Python 7.35.1): the generated code
# checks at import that the protobuf runtime is >= 7.35.1 and < 8, which is why pyproject.toml asks for that range.
#   pip install --target /tmp/grpctools --no-deps grpcio-tools==1.85.1
#   PYTHONPATH=/tmp/grpctools sh client/generate_protos.sh
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-../.venv/bin/python}"
"$PYTHON" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. sd_client/proto/*.proto

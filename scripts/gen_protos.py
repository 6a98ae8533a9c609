"""Regenerate the Python code for the wire protocol from proto/.

Usage: python scripts/gen_protos.py [OUTPUT_DIR]   (default: src)

The proto tree mirrors the import path (proto/giskard/rpc/v1/*.proto -> giskard.rpc.v1), so
the generated imports need no rewriting. tests/test_protos.py regenerates into a temporary
directory and fails when the committed code differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def generate(output_dir: Path) -> list[Path]:
    """Generate *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every .proto; return the .proto paths."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    protos = sorted(PROTO_DIR.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={output_dir}",
        f"--pyi_out={output_dir}",
        f"--grpc_python_out={output_dir}",
        *(str(p.relative_to(PROTO_DIR)) for p in protos),
    ]
    # protoc resolves relative proto paths against the include dirs, but must run from ROOT
    # so that the names recorded in the descriptors are the same on every machine.
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return protos


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src"
    out.mkdir(parents=True, exist_ok=True)
    for proto in generate(out):
        print(f"generated {proto.relative_to(PROTO_DIR)}")

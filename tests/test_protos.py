"""The committed generated code is what proto/ generates."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "src" / "giskard" / "rpc" / "v1"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    fresh = tmp_path / "giskard" / "rpc" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    assert names, "nothing was generated"
    committed = sorted(
        p.name for p in GENERATED.iterdir() if p.name != "__init__.py" and p.is_file()
    )
    assert committed == names, "generated files differ from the committed ones: run `make protos`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, GENERATED, names, shallow=False)
    assert not mismatch and not errors, f"stale generated code {mismatch}: run `make protos`"

"""The import contracts of .importlinter hold, and they would catch what they are there to catch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(config: Path, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), str(ROOT)])}
    return subprocess.run(
        [str(LINT), "--no-cache", str(config)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_engine_keeps_its_import_contracts() -> None:
    result = _lint(ROOT / ".importlinter", ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().split("contracts:")[-1].replace("0 broken", "")


def _package(root: Path, name: str, modules: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, body in modules.items():
        (root / name / f"{module}.py").write_text(body)


def test_a_public_module_that_drags_its_package_s_internals_breaks_the_contract(tmp_path: Path) -> None:
    _package(tmp_path, "alpha", {"models": "X = 1\n", "events": "from alpha.models import X\n"})
    _package(tmp_path, "beta", {"service": "import alpha.events\n", "events": "Y = 2\n"})
    config = tmp_path / "contracts.ini"
    shutil.copy(ROOT / ".importlinter", tmp_path / "original.ini")
    config.write_text(
        "[importlinter]\nroot_packages =\n    alpha\n    beta\ncontract_types =\n"
        "    public_modules: devtools.importcontracts.PublicModulesContract\n\n"
        "[importlinter:contract:public]\nname = public modules stand alone\ntype = public_modules\n"
        "packages =\n    alpha\n    beta\npublic =\n    events\n    ports\n"
    )
    result = _lint(config, tmp_path, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "alpha.events is public and must not import alpha.models" in result.stdout
    # Without that import the same layout keeps the contract.
    (tmp_path / "alpha" / "events.py").write_text("X = 1\n")
    assert _lint(config, tmp_path, tmp_path).returncode == 0

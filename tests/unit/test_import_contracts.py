"""The import contracts of .importlinter hold, and they would catch what they are there to catch."""

from __future__ import annotations

import os
import re
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
        "    public_modules: callcenter_devtools.importcontracts.PublicModulesContract\n\n"
        "[importlinter:contract:public]\nname = public modules stand alone\ntype = public_modules\n"
        "packages =\n    alpha\n    beta\npublic =\n    events\n    ports\n"
    )
    result = _lint(config, tmp_path, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "alpha.events is public and must not import alpha.models" in result.stdout
    # Without that import the same layout keeps the contract.
    (tmp_path / "alpha" / "events.py").write_text("X = 1\n")
    assert _lint(config, tmp_path, tmp_path).returncode == 0


def test_the_engine_loads_no_development_tool() -> None:
    """What `callcenter run` imports (the CLI and the composition root) brings in nothing of callcenter_devtools."""
    probe = (
        "import sys, callcenter.cli, callcenter.app;"
        "print(sorted(m for m in sys.modules if m == 'callcenter_devtools' or m.startswith('callcenter_devtools.')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# Each package's tables, by the name its models give them. A feature that names another's table in SQL text
# (``table("service_records", ...)``, ``FROM call_records``) reads it behind the owner's back: it asks the
# owner's port instead. Import contracts cannot see a table name in a string; this test does. (A foreign key
# to another's table in a model is the schema's integrity, not a read, and is not matched.)
FEATURES = ("calls", "seats", "crm_bridge", "outlets", "recordings", "ivr_flows", "supervisor")


def _tables() -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for path in [*ROOT.glob("*/models.py"), *ROOT.glob("callcenter/*/models.py")]:
        package = path.relative_to(ROOT).parts[0]
        owner = package if package in FEATURES else "callcenter"
        names = re.findall(r'__tablename__ = "([a-z_]+)"', path.read_text(encoding="utf-8"))
        owners.setdefault(owner, set()).update(names)
    return owners


def test_no_feature_names_another_package_s_table() -> None:
    owners = _tables()
    assert {"call_records", "agent_seats", "service_records", "recordings", "users"} <= set().union(*owners.values())
    found = []
    for feature in FEATURES:
        others = set().union(*(names for owner, names in owners.items() if owner != feature))
        for path in sorted((ROOT / feature).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for name in others:
                if re.search(rf"""\btable\(\s*["']{name}["']|\b(FROM|JOIN|INTO|UPDATE)\s+"?{name}\b""", text):
                    found.append(f"{path.relative_to(ROOT)}: {name}")
    assert found == []

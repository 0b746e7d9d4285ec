"""Layer borders: the reference engine never imports torch; the domain imports no Flask or Celery."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_reference_engine_runs_without_torch() -> None:
    code = (
        "import sys\n"
        "from shared.spec import TraceSpec\n"
        "from services.compiler import compile_spec\n"
        "from services.engines.reference import run_reference\n"
        "from services.engines.numeric import run_numeric\n"
        "from services.materialize import materialize\n"
        "g = compile_spec(TraceSpec(program=open('examples/chain_rule.py').read()))\n"
        "materialize(g)\n"
        "r = run_reference(g)\n"
        "assert float(r.grads['x']) == 2569.0, r.grads['x']\n"
        "run_numeric(g)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    assert _child(code) == "ok"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_domain_and_contract_import_no_web_or_queue_framework() -> None:
    for pkg, banned in (("services", {"flask", "flask_openapi3", "celery", "api", "worker"}),
                        ("shared", {"flask", "celery", "services", "api", "worker", "torch"})):
        for path in (ROOT / pkg).rglob("*.py"):
            assert not (_imports(path) & banned), f"{path} imports {_imports(path) & banned}"


def test_reference_modules_never_import_torch() -> None:
    for path in [*(ROOT / "services" / "ops").glob("*.py"), ROOT / "services" / "engines" / "reference.py"]:
        assert "torch" not in _imports(path), path


def test_no_eval_or_exec_anywhere() -> None:
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec", "compile"), f"{path}:{node.lineno}"


def test_the_api_has_no_worker_side_effects() -> None:
    """Importing and creating the API builds no worker app, connects no worker signal and leaves the GC alone."""
    code = (
        "import gc, sys\n"
        "from celery import signals\n"
        "before = {s: len(getattr(signals, s).receivers) for s in ('worker_init', 'worker_ready', 'worker_process_init', 'after_setup_logger')}\n"
        "from api.app import create_app\n"
        "create_app()\n"
        "assert 'worker.celery_app' not in sys.modules and 'worker.tasks' not in sys.modules, sorted(m for m in sys.modules if m.startswith('worker'))\n"
        "after = {s: len(getattr(signals, s).receivers) for s in before}\n"
        "assert after == before, (before, after)\n"
        "assert gc.isenabled()\n"
        "print('ok')\n"
    )
    assert _child(code).endswith("ok")


def test_the_readme_documents_every_setting() -> None:
    from shared.settings import Settings

    readme = (ROOT / "README.md").read_text()
    missing = [f"GRADTRACE_{n.upper()}" for n in Settings.model_fields if f"`GRADTRACE_{n.upper()}`" not in readme]
    assert not missing, f"README.md's configuration table lacks {missing}"


def test_the_readme_lists_every_op() -> None:
    """README.md's **Ops** list names each registered op, and no other."""
    from services.ops import REGISTRY

    readme = (ROOT / "README.md").read_text()
    start = readme.index("**Ops** (torch names")
    listed = set(re.findall(r"[a-z_0-9]+", readme[start : readme.index("Each op is one class", start)].split(":", 1)[1]))
    assert sorted(set(REGISTRY) - listed) == [], "README.md's **Ops** list lacks these"
    assert sorted(w for w in listed - set(REGISTRY) if len(w) > 1) == [], "README.md's **Ops** list names unknown ops"


def _child(code: str) -> str:
    """Run `code` in a fresh interpreter at the repository root; its stripped stdout (it must exit 0)."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()

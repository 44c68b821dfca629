"""Library code of simic and the policy never prints and holds no module-level mutable state."""

import ast
from pathlib import Path

import esper.simic
import esper.tamiyo.policy

PACKAGES = [Path(esper.simic.__file__).parent, Path(esper.tamiyo.policy.__file__).parent]


def modules():
    return [p for pkg in PACKAGES for p in sorted(pkg.glob("*.py"))]


def test_no_print_outside_the_cli():
    for path in modules():
        if path.name == "cli.py":
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, path


def test_no_module_level_mutable_containers():
    for path in modules():
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["__all__"]:
                continue
            assert not isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp)), (
                path, node.lineno)


def test_modules_stay_small():
    assert modules() and all(len(p.read_text().splitlines()) < 400 for p in modules())

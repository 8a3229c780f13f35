"""No float in the money path: an AST scan of every module that computes or parses money.

A line may opt out with a trailing ``# float-ok: <reason>`` (e.g. an HTTP timeout in seconds).
The scanner is tested on snippets first, so this test can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "dca_pipeline"
MONEY_PATH = ["domain", "lamassu", "ledger", "payouts", "simulate.py"]
FORBIDDEN_NAMES = {"float", "float16", "float32", "float64", "floating", "double"}
FORBIDDEN_CALLS = {"round", "floor", "ceil", "true_divide"}


def float_findings(source: str) -> list[str]:
    lines = source.splitlines()
    tree = ast.parse(source)
    # The marker covers a whole simple statement, which may span several lines.
    allowed_lines: set[int] = set()
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.stmt) and not hasattr(stmt, "body"):
            span = range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
            if any("# float-ok:" in lines[i - 1] for i in span):
                allowed_lines.update(span)
    findings = []

    def allowed(node: ast.AST) -> bool:
        line = getattr(node, "lineno", 0)
        return line in allowed_lines or (line > 0 and "# float-ok:" in lines[line - 1])

    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Constant):
            if isinstance(node.value, float):
                what = f"float literal {node.value!r}"
            elif isinstance(node.value, str) and node.value in FORBIDDEN_NAMES:
                what = f"float dtype string {node.value!r}"
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            what = f"name {node.id}"
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_NAMES:
            what = f"attribute .{node.attr}"
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in FORBIDDEN_CALLS:
                what = f"call {name}()"
        if what and not allowed(node):
            findings.append(f"line {node.lineno}: {what}")
    return findings


def money_files() -> list[Path]:
    files: list[Path] = []
    for entry in MONEY_PATH:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
    return files


@pytest.mark.parametrize(
    "snippet",
    [
        "x = 1.5",
        "x = 1e8",
        "y = float(v)",
        "df.astype('float64')",
        "np.float64(3)",
        "z = round(a / b)",
        "math.floor(a / b)",
        "math.ceil(a / b)",
        "np.floor(a)",
        "np.float32(3)",
        "df.astype(float)",
        "df.astype('float')",
        # the opt-out covers its own line only
        "timeout_s = 1.5  # float-ok: seconds\nfee = 2.5",
    ],
)
def test_scanner_flags_each_forbidden_pattern(snippet: str) -> None:
    assert float_findings(snippet)


def test_scanner_accepts_exact_code_and_marked_lines() -> None:
    clean = "from fractions import Fraction\nx = a * b // c\ny = Fraction(1, 3)\n"
    assert float_findings(clean) == []
    assert float_findings("timeout_s: float = 10.0  # float-ok: seconds\n") == []


def test_money_path_has_no_float() -> None:
    files = money_files()
    assert any(f.parent.name == "domain" for f in files), "the scan found no domain modules"
    problems = {
        str(f.relative_to(ROOT)): found
        for f in files
        if (found := float_findings(f.read_text(encoding="utf-8")))
    }
    assert problems == {}

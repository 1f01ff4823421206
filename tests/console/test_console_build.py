"""The console's own checks, run from pytest so the suite's one command runs them: the protocol
types are the ones docs/protocol.schema.json gives (the console cannot drift from the contract),
the TypeScript compiles, the sans-I/O parts pass their unit tests (vitest: request correlation,
dedupe by seq, backoff, shortcuts), every string is translated and none is hard-coded. Each
check is also shown to fail on what it guards against."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.console.conftest import CONSOLE, run_node

SCHEMA = CONSOLE.parent / "docs" / "protocol.schema.json"


def test_protocol_types_are_generated_from_the_schema(console_tools: Path) -> None:
    done = run_node("node", "scripts/gen-protocol-types.mjs", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_types_check_fails_when_the_schema_moves(console_tools: Path, tmp_path: Path) -> None:
    schema = json.loads(SCHEMA.read_text())
    schema["methods"]["call.dial"]["params"]["properties"]["priority"] = {"type": "integer"}
    moved = tmp_path / "schema.json"
    moved.write_text(json.dumps(schema))
    done = run_node("node", "scripts/gen-protocol-types.mjs", "--check", "--schema", str(moved))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "out of date" in done.stderr
    out = tmp_path / "generated.ts"
    assert run_node("node", "scripts/gen-protocol-types.mjs", "--schema", str(moved), "--out", str(out)).returncode == 0
    assert "priority?: number" in out.read_text()


def test_typescript_compiles(console_tools: Path) -> None:
    done = run_node(str(console_tools / "tsc"), "--noEmit", "-p", "tsconfig.json")
    assert done.returncode == 0, done.stdout + done.stderr


def test_unit_tests_of_the_client(console_tools: Path) -> None:
    done = run_node(str(console_tools / "vitest"), "run", "--reporter=verbose")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for name in ("matches replies to requests by id", "passes each seq once", "grows by the factor up to the cap",
                 "resumes from the last seq after a dropped link"):
        assert name in out, out


def test_every_string_is_translated_and_none_hard_coded(console_tools: Path) -> None:
    done = run_node("node", "scripts/lint-i18n.mjs")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_i18n_lint_finds_a_hard_coded_string_and_a_missing_key(console_tools: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(CONSOLE / "src" / "i18n", src / "i18n")
    (src / "Bad.tsx").write_text('export const Bad = () => <button title="Stop it">Hang up</button>;\n')
    zh = src / "i18n" / "zh-CN.ts"
    zh.write_text(zh.read_text().replace('  "shell.signout": "退出",\n', ""))
    done = run_node("node", "scripts/lint-i18n.mjs", "--src", str(src))
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'hard-coded text "Hang up"' in done.stderr
    assert 'hard-coded title="Stop it"' in done.stderr
    assert "missing key shell.signout" in done.stderr

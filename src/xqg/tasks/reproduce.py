"""Two-click reproductions (pyserini's 2CR style): run a condition of a matrix file such as
``reproductions/sigir2023.yaml`` and check its scores against the published ones.

A matrix lists conditions; each has the commands that produce it (``train.py`` / ``evaluate.py`` overrides, run
from the repository root without a shell) and rows with published R@kt per language and macro. The runner appends
``hydra.run.dir=<out>/<condition>/<step>`` to every command so it knows where each step's ``results.json`` lands,
then compares the chosen block of it with the published numbers within the condition's tolerance (points).

    xqg-reproduce --list
    xqg-reproduce --condition mbert_xqg --dry-run
    xqg-reproduce --condition released_runs [--set released_corpus=/data/shards/shard_*.jsonl]
    xqg-reproduce --all
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from xqg.core.artifacts import atomic_write_json, atomic_write_text
from xqg.core.errors import MissingResourceError, XqgInputError

DEFAULT_MATRIX = Path("reproductions/sigir2023.yaml")
SCRIPTS = ("train.py", "evaluate.py")
BLOCKS = ("metrics", "baseline", "compare")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Row:
    """One line of the paper's table: where its metrics are and what was published."""

    name: str
    block: str = "metrics"
    step: int | None = None  # 1-based command whose results.json holds the row (default: the last)
    source: str | None = None
    expected: Mapping[str, Mapping[str, float]] | None = None
    significant: tuple[str, ...] = ()  # metrics whose macro must beat the baseline significantly (p < level)


@dataclass(frozen=True)
class Condition:
    name: str
    title: str
    commands: tuple[str, ...]
    rows: tuple[Row, ...]
    needs: str = ""
    tolerance: float | None = None


@dataclass(frozen=True)
class Matrix:
    path: Path
    paper: str
    metrics: tuple[str, ...]
    languages: tuple[str, ...]
    conditions: tuple[Condition, ...]
    variables: Mapping[str, str]
    downloads: tuple[Mapping[str, Any], ...] = ()

    def condition(self, name: str) -> Condition:
        for c in self.conditions:
            if c.name == name:
                return c
        raise XqgInputError(
            f"no condition {name!r}; choose from {[c.name for c in self.conditions]}",
            path=self.path,
            field="conditions",
        )


@dataclass(frozen=True)
class Check:
    """One published number against the measured one."""

    condition: str
    row: str
    metric: str
    language: str
    expected: float | None
    measured: float | None
    tolerance: float | None
    kind: str = "value"  # value: |measured - expected| <= tolerance; p: a p-value below the level `expected`

    @property
    def diff(self) -> float | None:
        if self.expected is None or self.measured is None:
            return None
        return self.measured - self.expected

    @property
    def status(self) -> str:
        if self.measured is None:
            return "MISSING"
        if self.kind == "p" and self.expected is not None:
            return "OK" if self.measured < self.expected else "FAIL"
        if self.expected is None or self.tolerance is None:
            return "reported"
        return "OK" if abs(self.diff or 0.0) <= self.tolerance + 1e-9 else "FAIL"


# -- reading the matrix -----------------------------------------------------------------------------------------
def _need(node: Mapping[str, Any], key: str, path: Path, where: str) -> Any:
    if key not in node or node[key] in (None, ""):
        raise XqgInputError(f"{where} has no {key!r}", path=path, field=f"{where}.{key}")
    return node[key]


def _expected(node: Any, path: Path, where: str) -> dict[str, dict[str, float]] | None:
    if node is None:
        return None
    if not isinstance(node, Mapping):
        raise XqgInputError("expected must map metric -> {language: score}", path=path, field=where)
    out: dict[str, dict[str, float]] = {}
    for metric, langs in node.items():
        if not isinstance(langs, Mapping):
            raise XqgInputError(f"{metric} must map language -> score", path=path, field=f"{where}.{metric}")
        try:
            out[str(metric)] = {str(k): float(v) for k, v in langs.items()}
        except (TypeError, ValueError):
            raise XqgInputError("scores must be numbers", path=path, field=f"{where}.{metric}") from None
    return out


def _row(node: Any, path: Path, where: str, n_commands: int) -> Row:
    if not isinstance(node, Mapping):
        raise XqgInputError("a row must be a mapping", path=path, field=where)
    block = str(node.get("from", "metrics"))
    if block not in BLOCKS:
        raise XqgInputError(f"from must be one of {BLOCKS}, got {block!r}", path=path, field=f"{where}.from")
    step = node.get("step")
    if step is not None and (not isinstance(step, int) or not 1 <= step <= n_commands):
        raise XqgInputError(f"step must be 1..{n_commands}, got {step!r}", path=path, field=f"{where}.step")
    return Row(
        name=str(_need(node, "name", path, where)),
        block=block,
        step=step,
        source=node.get("source"),
        expected=_expected(node.get("expected"), path, f"{where}.expected"),
        significant=tuple(str(m) for m in node.get("significant") or ()),
    )


def load_matrix(path: str | Path = DEFAULT_MATRIX) -> Matrix:
    """The matrix file, checked in full before anything runs."""
    p = Path(path)
    if not p.is_file():
        raise MissingResourceError(f"reproduction matrix not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise XqgInputError(f"not valid YAML: {' '.join(str(e).split())}", path=p) from None
    if not isinstance(raw, Mapping):
        raise XqgInputError("a matrix must be a mapping with 'conditions'", path=p)
    conditions = []
    seen: set[str] = set()
    for i, node in enumerate(_need(raw, "conditions", p, "matrix")):
        where = f"conditions[{i}]"
        name = str(_need(node, "name", p, where))
        if name in seen:
            raise XqgInputError(f"condition {name!r} is listed twice", path=p, field=f"{where}.name")
        seen.add(name)
        commands = tuple(" ".join(str(c).split()) for c in _need(node, "commands", p, where))
        rows = tuple(
            _row(r, p, f"{where}.rows[{j}]", len(commands)) for j, r in enumerate(node.get("rows") or [])
        )
        tol = node.get("tolerance")
        conditions.append(
            Condition(
                name=name,
                title=str(node.get("title", "")),
                commands=commands,
                rows=rows,
                needs=str(node.get("needs", "")),
                tolerance=None if tol is None else float(tol),
            )
        )
    return Matrix(
        path=p,
        paper=str(raw.get("paper", "")),
        metrics=tuple(raw.get("metrics") or ("R@2kt", "R@5kt")),
        languages=tuple(raw.get("languages") or ()),
        conditions=tuple(conditions),
        variables={str(k): str(v) for k, v in (raw.get("variables") or {}).items()},
        downloads=tuple(raw.get("downloads") or ()),
    )


# -- commands ---------------------------------------------------------------------------------------------------
def substitute(command: str, variables: Mapping[str, str]) -> str:
    """``${name}`` from ``variables``; other ``${...}`` (Hydra interpolations) are left alone."""
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), command)


def command_argv(command: str, variables: Mapping[str, str], run_dir: Path) -> list[str]:
    """The argv of one matrix command (no shell): the entry script with this interpreter and a fixed run folder."""
    args = shlex.split(substitute(command, variables))
    if not args:
        raise XqgInputError("empty command", field="commands")
    if args[0] in SCRIPTS:
        return [sys.executable, args[0], *args[1:], f"hydra.run.dir={run_dir}"]
    if args[0] == "xqg-eval":
        return [sys.executable, "-m", "xqg.tasks.eval_cli", *args[1:]]
    raise XqgInputError(
        f"commands must start with one of {(*SCRIPTS, 'xqg-eval')}, got {args[0]!r}", field="commands"
    )


def step_dir(out: Path, condition: Condition, step: int) -> Path:
    return out / condition.name / str(step)


# -- checking ---------------------------------------------------------------------------------------------------
def _block(results: Mapping[str, Any], block: str) -> Mapping[str, Any] | None:
    if block == "metrics":
        found = results.get("metrics", results)  # evaluate.py nests under "metrics"; scoring runs do not
    else:
        found = results.get(block)
    return found if isinstance(found, Mapping) else None


def check_row(
    condition: Condition, row: Row, results: Mapping[str, Any] | None, metrics: Sequence[str]
) -> list[Check]:
    """Each published number of ``row`` (or, without any, each measured macro) against ``results``."""
    block = _block(results, row.block) if results is not None else None
    wanted = row.expected or {m: {"macro": float("nan")} for m in metrics}
    out = []
    for metric, langs in wanted.items():
        measured_block = block.get(metric) if block is not None else None
        for lang, value in langs.items():
            got = measured_block.get(lang) if isinstance(measured_block, Mapping) else None
            out.append(
                Check(
                    condition=condition.name,
                    row=row.name,
                    metric=metric,
                    language=lang,
                    expected=None if row.expected is None else value,
                    measured=None if got is None else float(got),
                    tolerance=condition.tolerance,
                )
            )
    return out


def _gain_p_value(results: Mapping[str, Any] | None, metric: str) -> tuple[float | None, float]:
    """The smallest p-value (Holm-adjusted when the run corrected) of the macro ``metric`` tests (t-test,
    randomisation) whose difference favours the system over the baseline (1.0 when none does; None when the
    results hold no test), and the level."""
    sig = results.get("significance") if isinstance(results, Mapping) else None
    if not isinstance(sig, Mapping):
        return None, 0.05
    tests = (sig.get("tests") or {}).get(metric, {}).get("macro")
    if not isinstance(tests, Mapping) or not tests:
        return None, float(sig.get("level", 0.05))
    adjusted = (sig.get("adjusted") or {}).get(metric, {}).get("macro", {})  # Holm-adjusted, when corrected
    favoured = [
        float(adjusted.get(name, t["p_value"])) for name, t in tests.items() if float(t.get("diff", 0.0)) > 0
    ]
    return min(favoured, default=1.0), float(sig.get("level", 0.05))


def check_significance(condition: Condition, row: Row, results: Mapping[str, Any] | None) -> list[Check]:
    """One check per metric in ``row.significant``: the system's macro gain over the baseline is significant."""
    out = []
    for metric in row.significant:
        p, level = _gain_p_value(results, metric)
        out.append(Check(condition.name, row.name, f"{metric} gain p", "macro", level, p, None, kind="p"))
    return out


def check_condition(condition: Condition, out: Path, metrics: Sequence[str]) -> list[Check]:
    """Compare a finished condition's results.json files with its rows."""
    checks: list[Check] = []
    for row in condition.rows:
        step = row.step or len(condition.commands)
        path = step_dir(out, condition, step) / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else None
        checks += check_row(condition, row, results, metrics)
        checks += check_significance(condition, row, results)
    return checks


def report_table(checks: Sequence[Check]) -> str:
    """Markdown: one line per number, with the difference and the verdict."""

    def fmt(x: float | None) -> str:
        return "" if x is None else f"{x:.2f}"

    lines = [
        "| condition | row | metric | lang | published | measured | diff | tol | status |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for c in checks:
        diff = "" if c.diff is None or c.kind == "p" else f"{c.diff:+.2f}"
        tol = "" if c.tolerance is None else f"{c.tolerance:g}"
        expected, measured = (
            (f"< {c.expected:g}", "" if c.measured is None else f"{c.measured:.2g}")
            if c.kind == "p"
            else (fmt(c.expected), fmt(c.measured))
        )
        lines.append(
            f"| {c.condition} | {c.row} | {c.metric} | {c.language} | {expected} | {measured} "
            f"| {diff} | {tol} | {c.status} |"
        )
    return "\n".join(lines)


# -- running ----------------------------------------------------------------------------------------------------
def dry_run(matrix: Matrix, names: Sequence[str], out: Path, variables: Mapping[str, str]) -> str:
    """What the runner would execute, condition by condition (shell-quoted, copy-pasteable)."""
    lines = []
    for name in names:
        c = matrix.condition(name)
        lines.append(f"# {c.name}: {c.title}")
        if c.needs:
            lines.append(f"#   needs: {c.needs}")
        for i, cmd in enumerate(c.commands, 1):
            argv = command_argv(cmd, variables, step_dir(out, c, i))
            lines.append(shlex.join(["python", *argv[1:]] if argv[0] == sys.executable else argv))
        lines.append("")
    return "\n".join(lines)


def run_condition(condition: Condition, out: Path, variables: Mapping[str, str], root: Path) -> None:
    """Run the commands in order; stop at the first that fails."""
    for i, cmd in enumerate(condition.commands, 1):
        argv = command_argv(cmd, variables, step_dir(out, condition, i))
        print(f"[{condition.name} {i}/{len(condition.commands)}] {shlex.join(argv[1:])}", flush=True)
        done = subprocess.run(argv, cwd=root, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{condition.name}: step {i} exited with {done.returncode}: {shlex.join(argv[1:])}"
            )


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise XqgInputError(f"--set takes name=value, got {item!r}", field="--set")
        out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="xqg-reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("--matrix", default=str(DEFAULT_MATRIX), help="matrix YAML (default: %(default)s)")
    ap.add_argument("--condition", action="append", default=[], help="condition to run (repeatable)")
    ap.add_argument("--all", action="store_true", help="every condition")
    ap.add_argument("--list", action="store_true", help="list the conditions and exit")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument(
        "--check-only", action="store_true", help="compare existing results in --out, run nothing"
    )
    ap.add_argument("--out", default=None, help="where the runs go (default: outputs/reproduce/<time>)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a variable")
    ap.add_argument("--tolerance", type=float, default=None, help="override every condition's tolerance")
    ap.add_argument("--root", default=".", help="repository root (where train.py and evaluate.py are)")
    args = ap.parse_args(argv)
    try:
        return _main(args)
    except (XqgInputError, MissingResourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    if args.tolerance is not None and args.tolerance < 0:
        raise XqgInputError("--tolerance must be >= 0", field="--tolerance")
    variables = {**matrix.variables, **_parse_sets(args.set)}
    if args.list:
        for c in matrix.conditions:
            print(f"{c.name:22s} {c.title}")
        return 0
    names = [c.name for c in matrix.conditions] if args.all else list(args.condition)
    if not names:
        raise XqgInputError("name a --condition (see --list) or use --all", field="--condition")
    for name in names:
        matrix.condition(name)  # every name checked before anything runs
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(args.out or Path(args.root) / "outputs" / "reproduce" / stamp).resolve()
    if args.dry_run:
        print(dry_run(matrix, names, out, variables))
        return 0
    checks: list[Check] = []
    failed: list[str] = []
    for name in names:
        c = matrix.condition(name)
        if args.tolerance is not None:
            c = Condition(c.name, c.title, c.commands, c.rows, c.needs, args.tolerance)
        if not args.check_only:
            try:
                run_condition(c, out, variables, Path(args.root))
            except RuntimeError as e:
                print(f"error: {e}", file=sys.stderr)
                failed.append(name)
                continue
        checks += check_condition(c, out, matrix.metrics)
    table = report_table(checks)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.md", table + "\n")
    atomic_write_json(
        out / "report.json",
        {
            "matrix": str(matrix.path),
            "failed": failed,
            "checks": [asdict(c) | {"status": c.status} for c in checks],
        },
    )
    print(f"report: {out / 'report.md'}")
    bad = failed or [c for c in checks if c.status in ("FAIL", "MISSING")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

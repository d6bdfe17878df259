"""Findings and the report: rule · what the documentation says · what was observed · verdict."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"


@dataclass(frozen=True)
class Finding:
    rule: str
    doc: str
    observed: str
    verdict: str


@dataclass
class Report:
    target: str
    fake: bool
    findings: list[Finding] = field(default_factory=list)
    paid_tasks: int = 0
    paid_units: dict[str, int] = field(default_factory=dict)
    schemathesis_tasks: int = 0  # tasks schemathesis's accepted submissions made (none on a live target)
    seconds: float = 0.0

    def add(self, rule: str, doc: str, observed: str, verdict: str) -> Finding:
        finding = Finding(rule, doc, observed, verdict)
        self.findings.append(finding)
        return finding

    def check(self, rule: str, doc: str, ok: bool, observed: str) -> bool:
        self.add(rule, doc, observed, PASS if ok else FAIL)
        return ok

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == FAIL]

    def verdict_of(self, rule: str) -> str | None:
        verdicts = [f.verdict for f in self.findings if f.rule == rule]
        if not verdicts:
            return None
        return FAIL if FAIL in verdicts else verdicts[-1]

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, SKIP: 0, INFO: 0}
        for f in self.findings:
            out[f.verdict] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "target_is_mockserver": self.fake,
            "paid_tasks": self.paid_tasks,
            "paid_units": self.paid_units,
            "schemathesis_tasks": self.schemathesis_tasks,
            "seconds": round(self.seconds, 3),
            "counts": self.counts(),
            "findings": [asdict(f) for f in self.findings],
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def print_table(self, out: TextIO) -> None:
        width = max(100, min(shutil.get_terminal_size((140, 20)).columns, 180))
        rule_w, verdict_w = 34, 5
        text_w = (width - rule_w - verdict_w - 9) // 2
        line = "-" * width
        heading = f"{'rule':<{rule_w}} | {'documentation says':<{text_w}} | {'observed':<{text_w}} | verdict"
        out.write(f"{line}\n{heading}\n{line}\n")
        for f in self.findings:
            doc = textwrap.wrap(f.doc, text_w) or [""]
            seen = textwrap.wrap(f.observed, text_w) or [""]
            rules = textwrap.wrap(f.rule, rule_w) or [""]
            for i in range(max(len(doc), len(seen), len(rules))):
                cells = (
                    rules[i] if i < len(rules) else "",
                    doc[i] if i < len(doc) else "",
                    seen[i] if i < len(seen) else "",
                    f.verdict if i == 0 else "",
                )
                out.write(f"{cells[0]:<{rule_w}} | {cells[1]:<{text_w}} | {cells[2]:<{text_w}} | {cells[3]}\n")
        counts = self.counts()
        out.write(
            f"{line}\n{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped, {counts[INFO]} open points "
            f"reported; {self.paid_tasks} paid task(s) used"
            + (f", and {self.schemathesis_tasks} task(s) made by schemathesis" if self.schemathesis_tasks else "")
            + f"; {self.seconds:.1f} s\n"
        )

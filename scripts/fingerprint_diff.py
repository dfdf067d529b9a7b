"""The differences between two fingerprints of scripts/fingerprint.sh, renamed keys aside:

    python scripts/fingerprint_diff.py BEFORE/fingerprint.json AFTER/fingerprint.json

prints one line per value that differs (``~``), or that one side lacks (``-``/``+``), and their count.
Wall-clock values (a sampling time) and paths differ between any two runs; every other line is a
change in what the code computes."""

from __future__ import annotations

import json
import sys
from typing import Any

# Keys and words renamed since earlier fingerprints: the old name on the left.
RENAMED = {"mnist_fid": "classifier_fid", "class_accuracy_per_digit": "class_accuracy_per_class",
           "val/fid": "val/classifier_fid", "report/lines": "runs_table/lines"}


def renamed(value: Any) -> Any:
    if isinstance(value, dict):
        return {RENAMED.get(k, k): renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v) for v in value]
    if isinstance(value, str):
        for old, new in RENAMED.items():
            value = value.replace(old, new)
    return value


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            if key not in after:
                out.append(f"- {path}/{key}")
            elif key not in before:
                out.append(f"+ {path}/{key}")
            else:
                out += differences(before[key], after[key], f"{path}/{key}")
        return out
    return [] if before == after else [f"~ {path}: {str(before)[:120]} -> {str(after)[:120]}"]


def main(argv: list[str]) -> None:
    before, after = (renamed(json.loads(open(p).read())) for p in argv)
    found = differences(before, after)
    print("\n".join(found))
    print(f"{len(found)} difference(s)")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Summarise a py-spy profile (``py-spy record --threads --format raw``) as numbers.

Prints, of the non-idle samples: the share per thread (names with their counter
stripped, so ``soup-grpc_3`` counts as ``soup-grpc``), and the functions with the
largest inclusive and self shares. Used to find where per-call time goes; e.g.::

    py-spy record --pid PID --threads --rate 200 --duration 15 --format raw -o p.txt
    python scripts/bench_profile.py p.txt
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_THREAD = re.compile(r"thread \(\d+\): ?(?P<name>[^;]*)")
_COUNTER = re.compile(r"[-_]\d+$")


def summarise(text: str, top: int = 15) -> str:
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        match = _THREAD.match(frames[0])
        name = _COUNTER.sub("", match.group("name")) if match else "?"
        threads[name or "unnamed"] += count
        funcs = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0] + ")" for f in frames[1:]
        ]
        for func in set(funcs):
            inclusive[func] += count
        if funcs:
            own[funcs[-1]] += count
        total += count
    lines = [f"{total} samples"]
    lines += ["", "threads:"] + [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common()]
    lines += ["", "inclusive:"] + [
        f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)
    ]
    lines += ["", "self:"] + [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarise(args.profile.read_text(), args.top))


if __name__ == "__main__":
    main()

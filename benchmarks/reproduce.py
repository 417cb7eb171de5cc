"""The reproduction benchmark: run the classic experiments (in full with --full) and write
each outcome into REPRODUCTIONS.md between its markers.

    python benchmarks/reproduce.py [NAME ...] [--full] [--seeds N] [--out DIR] [--write FILE]

NAME: experiments of `gradprobe reproduce` (default: every one). Each prints its table as
the command does; with --write, the experiment's section of FILE (between
`<!-- reproduce:NAME -->` and `<!-- /reproduce:NAME -->`, appended when absent) is
replaced by the table in Markdown, the claims, the notes, the command and the wall time,
so experiments can be run one at a time. Exits 0 whatever the outcome: a disagreement
with the published figure is a result, written down with its reason.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for imports

from gradprobe.lab.reproduce import EXPERIMENTS, reproduce  # noqa: E402


def _num(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def _seeds(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"1 seed ({seeds[0]})"
    return f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]})"


def markdown(doc: dict, command: str) -> str:
    """One experiment's section: header, table, claims, notes, command and time."""
    seeds = doc["seeds"]
    lines = [
        f"## {doc['name']} — {doc['title']}",
        "",
        f"Source: {doc['source']}" + (f" <{doc['url']}>" if doc["url"] else ""),
        "",
        f"`{command}` — {'full' if doc['full'] else 'default'} run, {_seeds(seeds)}, "
        f"{doc['elapsed_s']:.0f} s wall, "
        f"{datetime.date.today().isoformat()}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        "",
        f"Settings: `{doc['settings']}`",
        "",
    ]
    if doc["rows"]:
        lines += [
            "| figure | published | ours mean | sd | n | agrees |",
            "|---|---|---|---|---|---|",
        ]
        for r in doc["rows"]:
            verdict = "yes" if r["agrees"] else "**no**"
            label = r["label"].replace("|", "\\|")  # a pipe would end the Markdown cell
            lines.append(
                f"| {label} | {_num(r['published'])} | {_num(r['mean'])} | "
                f"{_num(r['spread'])} | {r['n']} | {verdict} |"
            )
        lines.append("")
    for c in doc["checks"]:
        lines.append(f"- claim {'holds' if c['holds'] else '**fails**'}: {c['claim']} — ours: "
                     f"{c['evidence']}")  # fmt: skip
    lines += ["", f"**{doc['summary']}**", ""]
    lines += [f"- {note}" for note in doc["notes"]]
    lines += [f"- {r['label']}: {r['why']}" for r in doc["rows"] if r["why"] and not r["agrees"]]
    return "\n".join(lines).rstrip() + "\n"


def write_section(path: Path, name: str, text: str) -> None:
    """Replace NAME's section of the Markdown file at `path` (append it when absent)."""
    begin, end = f"<!-- reproduce:{name} -->", f"<!-- /reproduce:{name} -->"
    block = f"{begin}\n{text}{end}"
    old = path.read_text() if path.exists() else "# Reproductions\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _m: block, old)
    else:
        new = f"{old.rstrip()}\n\n{block}\n"
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=[], help=", ".join(EXPERIMENTS))
    parser.add_argument("--full", action="store_true", help="run the originals in full")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce-bench"))
    parser.add_argument("--write", type=Path, default=None, help="e.g. REPRODUCTIONS.md")
    args = parser.parse_args()
    for name in args.names or list(EXPERIMENTS):
        command = f"python benchmarks/reproduce.py {name}" + (" --full" if args.full else "")
        if args.seeds is not None:
            command += f" --seeds {args.seeds}"
        (rep,) = reproduce(name, seeds=args.seeds, full=args.full, out=args.out, log=print)
        print(rep.table())
        print(f"{name}: {rep.elapsed_s:.1f} s")
        if args.write is not None:
            write_section(args.write, name, markdown(rep.to_dict(), command))


if __name__ == "__main__":
    main()

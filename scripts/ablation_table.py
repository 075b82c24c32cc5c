#!/usr/bin/env python3
"""The ablation's summary table (docs/confu.md) from the `confu eval --json` reports of
scripts/testbed.sh's ablation stage: tau per variant, tau ratio of each ConFu variant to the
EAGLE-3 control with its 95 % bootstrap interval, speedup over vanilla and greedy equality.

    python3 scripts/ablation_table.py DIR   (DIR holds ablation-t{T}-{TOTAL}-{DEPTH}-{TOPK}.json)
"""
import json
import sys
from pathlib import Path

d = Path(sys.argv[1] if len(sys.argv) > 1 else "target/testbed/ablation")
rows = []
for temp in ["0", "0.7", "1"]:
    for tree in ["30-5-8", "60-5-10", "4-3-1"]:
        p = d / f"ablation-t{temp}-{tree}.json"
        if not p.exists():
            continue
        r = json.loads(p.read_text())
        names = [x["name"].split(":")[1] for x in r["drafters"]]
        tau = {n: x["report"]["overall"]["tau"] for n, x in zip(names, r["drafters"])}
        speed = {n: x["report"]["overall"]["speedup"] for n, x in zip(names, r["drafters"])}
        equal = all(x["report"]["overall"]["all_equal"] in (True, None) for x in r["drafters"])
        ratio = {
            t["variant"].split(":")[1]: t
            for t in r["tau_ratios"]
            if t["category"] == "overall"
        }
        cells = [f"{tau[names[0]]:.2f}"]
        for n in names[1:]:
            t = ratio[n]
            cells.append(f"{tau[n]:.2f} ({t['ratio']:.3f} [{t['low']:.3f}, {t['high']:.3f}])")
        sp = " / ".join(f"{speed[n]:.2f}" for n in names)
        eq = "yes" if temp == "0" and equal else ("—" if temp != "0" else "NO")
        rows.append(f"| {temp} | {tree.replace('-', '/')} | " + " | ".join(cells) + f" | {sp} | {eq} |")
print("| T | tree | " + " | ".join(["control τ", "static τ (ratio [95 % CI])", "static + rep τ (ratio)", "full τ (ratio)"]) + " | speedup (control / static / rep / full) | greedy = vanilla |")
print("|---|---|---|---|---|---|---|---|")
print("\n".join(rows))

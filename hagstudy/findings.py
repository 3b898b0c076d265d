"""Plain-language findings generated from the result tables, so the prose never drifts from the numbers."""

from __future__ import annotations

import pandas as pd


def _fmt_rel(row: pd.Series) -> str:
    rel = row["rel_improvement"]
    rel_txt = f"{rel:+.1%} relative" if pd.notna(rel) else "relative change undefined (baseline 0)"
    return (
        f"{row['target_mean']:.3f} vs {row['base_mean']:.3f} ({rel_txt}; difference {row['diff']:+.3f}, "
        f"95% CI [{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}], p={row['p_value']:.3f})"
    )


def lines(relative: pd.DataFrame, strong: pd.DataFrame | None = None, target: str = "HAG") -> list[str]:
    """One sentence per task and baseline, then a count of wins, losses and ties per baseline."""
    out: list[str] = []
    tables = [relative] + ([strong] if strong is not None else [])
    rel = pd.concat(tables, ignore_index=True)
    for _, row in rel.iterrows():
        verdict = row["verdict"]
        if verdict == "better":
            head = f"{row['task']}: {target} beats {row['baseline']}"
        elif verdict == "worse":
            head = f"{row['task']}: {target} is WORSE than {row['baseline']}"
        else:
            head = f"{row['task']}: {target} does not differ significantly from {row['baseline']}"
        out.append(f"{head}: {_fmt_rel(row)}.")
    for base, g in rel.groupby("baseline", sort=False):
        counts = g["verdict"].value_counts()
        out.append(
            f"Against {base}: better on {counts.get('better', 0)}, worse on {counts.get('worse', 0)}, "
            f"no significant difference on {counts.get('no significant difference', 0)} of {len(g)} tasks."
        )
    return out

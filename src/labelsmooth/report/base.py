"""The report's shared vocabulary: the metrics it tables, the swept parameter's values as table columns, labels
and number formatting. Every other module of the report imports this one; it imports none of them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MARKDOWN_TITLE = "# Label smoothing sweep report"
DEFAULT_PARAMETER = "smoothing.gamma"
REPLICATE_KEYS = {"seed"}
# The options that make a report's rows (``model=mlp``, not ``model.depth=8``): never its swept parameter.
ROW_KEYS = ("dataset", "model")


@dataclass(frozen=True)
class ReportMetric:
    """A ``metrics.json`` key reported as a table; values shown ×``scale`` (percent).

    ``optional``: shown (table, CSVs, W&B panels, runs.csv column) only when a completed job records it; the
    others are always shown, with a line saying that no job reports them. ``accuracy``: its cells mark the seeds
    that were still improving (best validation accuracy at the last epoch trained).
    """

    key: str
    title: str
    higher_is_better: bool
    scale: float = 100.0
    optional: bool = False
    accuracy: bool = False

    @property
    def slug(self) -> str:
        return self.key.replace("/", "_")

    @property
    def on_test_split(self) -> bool:
        """A test metric: its Table 3 compares the value ``SELECTION_METRIC`` chose, not its own best."""
        return self.key.startswith("test/")

    def best_label(self, symbol: str) -> str:
        """How Table 3 of this metric chooses its best value, in its title."""
        if self.on_test_split:
            return f"best {symbol} by {SELECTION_METRIC}"
        return f"best {symbol} ({'highest' if self.higher_is_better else 'lowest'} mean)"


# What the report chooses the best value of a test metric's Table 3 by (the default checkpoint selection's metric):
# a best chosen on the test split would bias the comparison that split then tests.
SELECTION_METRIC = "val/acc_best"

REPORT_METRICS = (
    ReportMetric("val/acc_best", "Best validation accuracy (%)", higher_is_better=True, accuracy=True),
    ReportMetric("test/acc", "Test accuracy of the selected checkpoint (%)", higher_is_better=True, accuracy=True),
    ReportMetric("test/ece", "Test ECE (%)", higher_is_better=False),
    ReportMetric("test/ece_ts", "Test ECE after temperature scaling (%)", higher_is_better=False),
    ReportMetric("test/smooth_ece", "Test smooth ECE (%)", higher_is_better=False, optional=True),
    ReportMetric(
        "test/smooth_ece_ts", "Test smooth ECE after temperature scaling (%)", higher_is_better=False, optional=True
    ),
    ReportMetric("test/classwise_ece", "Test class-wise ECE (%)", higher_is_better=False, optional=True),
    ReportMetric(
        "test/classwise_ece_ts",
        "Test class-wise ECE after temperature scaling (%)",
        higher_is_better=False,
        optional=True,
    ),
    ReportMetric("test/aurc", "Test AURC, max-softmax confidence (%)", higher_is_better=False, optional=True),
    ReportMetric("test/aurc_ts", "Test AURC after temperature scaling (%)", higher_is_better=False, optional=True),
    ReportMetric(
        "test/aurc_lognorm", "Test AURC, logit-normalised confidence (%)", higher_is_better=False, optional=True
    ),
    ReportMetric("test/augrc", "Test AUGRC, max-softmax confidence (%)", higher_is_better=False, optional=True),
    ReportMetric("test/augrc_ts", "Test AUGRC after temperature scaling (%)", higher_is_better=False, optional=True),
    ReportMetric(
        "test/augrc_lognorm", "Test AUGRC, logit-normalised confidence (%)", higher_is_better=False, optional=True
    ),
)

ParameterValue = float | str


def as_float(value: Any) -> float | None:
    """``value`` as a finite float; None for booleans, None, text that is no number and non-finite numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_parameter_value(value: Any) -> ParameterValue | None:
    """A job's value of the swept parameter as a table column: a finite number as a float (γ, ε, a seed) to 12
    significant digits (``column_number``), other plain values as text (``smoothing``: the strategy's name;
    booleans as ``true`` / ``false``); None for a missing or nested value. The 12 digits make one column of the
    values that print the same: Hydra's ``range(0.1, 1.1, 0.1)`` gives γ = 0.30000000000000004, a list 0.3.

    >>> as_parameter_value(0.1 + 0.1 + 0.1), as_parameter_value("0.3"), as_parameter_value("gamma")
    (0.3, 0.3, 'gamma')
    """
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    number = as_float(value)
    return column_number(number) if number is not None else str(value)


def column_number(number: float) -> float:
    """A parameter's number as its table column: to 12 significant digits (``as_parameter_value``)."""
    return float(f"{number:.12g}")


def column_order(value: ParameterValue) -> tuple[int, float, str]:
    """Numbers ascending, then names alphabetically."""
    return (1, 0.0, value) if isinstance(value, str) else (0, value, "")


def format_value(value: ParameterValue) -> str:
    """A parameter's value as the report prints it: a number to the 12 significant digits that make its column
    (``column_number``), so two columns never print alike (headers, figure panels, legends), without float noise.

    >>> format_value(0.9999999), format_value(1.0), format_value(0.1 + 0.2), format_value(1e-5), format_value("gamma")
    ('0.9999999', '1', '0.3', '1e-05', 'gamma')
    """
    return f"{value:.12g}" if isinstance(value, float) else str(value)


def param_label(parameter: str) -> str:
    """The symbol of a parameter in headers and axes: ``smoothing.gamma`` → γ, ``smoothing.epsilon`` → ε."""
    name = parameter.rsplit(".", 1)[-1]
    return {"gamma": "γ", "epsilon": "ε"}.get(name, name)


def slug(text: str) -> str:
    """``text`` as a file-name part: letters, digits, ``-_.`` kept, anything else ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def fmt(value: float | None, digits: int = 2) -> str:
    """``value`` to ``digits`` decimals (a value that rounds to zero without its sign: never ``-0.00``); – for
    none or a non-finite one.

    >>> fmt(-0.001), fmt(12.345), fmt(float("nan"))
    ('0.00', '12.35', '–')
    """
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def fmt_p_value(p: float | None) -> str:
    """A p-value to 4 decimals, and one below 0.0001 as ``< 0.0001`` (never ``0.0000``).

    >>> [fmt_p_value(p) for p in (0.04123, 6.5e-21, float("nan"))]
    ['0.0412', '< 0.0001', '–']
    """
    return "< 0.0001" if p is not None and 0 <= p < 5e-5 else fmt(p, 4)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

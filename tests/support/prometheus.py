"""The one parser of the Prometheus text exposition the tests read from /metrics."""

from __future__ import annotations

import re


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of one Prometheus metric whose labels include `labels` (summed over workers).

    `text` is a /metrics body; samples with a label set (`name{...} value`) and without (`name value`, which
    only a metric without labels has) are read.
    """
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total

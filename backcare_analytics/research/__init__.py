"""Research on cohorts: per-patient cohort tables, models, figures, de-identified exports and a
whole-patient-bucket engine for cohorts beyond one process (see ``docs/research.md`` and
``docs/scaling.md``).

Submodules are imported on demand (``from backcare_analytics.research import cohort``):

- :mod:`~backcare_analytics.research.cohort` — one row per patient / patient-week / exercise;
- :mod:`~backcare_analytics.research.models` — mixed models, survival, responders, Table 1;
- :mod:`~backcare_analytics.research.figures` — cohort figures (frames in, ``Axes`` out);
- :mod:`~backcare_analytics.research.export` — keyed pseudonyms, study days, allowlist;
- :mod:`~backcare_analytics.research.distributed` — buckets of whole patients on Dask.
"""

from __future__ import annotations

__all__ = ["cohort", "distributed", "export", "figures", "models"]

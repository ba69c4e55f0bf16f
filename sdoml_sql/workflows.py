"""The commands whose commit spans stages: ``build``, ``rebuild`` and ``stats`` that also write
the query stage's materialized copies (``frame_times``, ``frame_quality``) into the catalog.

The builder (``catalog_builder``) and the stats pass (``quality``) sit above the query stage
and never import it; each takes a ``derive(location, manifest)`` callable that its commit
calls once the new files are in place and before the manifest is written.  This module, an
entry point like the CLI, joins the two: the functions the package exports
(:func:`sdoml_sql.build_catalog`, :func:`sdoml_sql.rebuild_catalog`,
:func:`sdoml_sql.compute_frame_stats`) and the CLI commands are these, so the first query
after any of them reads the copies without writing them (:mod:`sdoml_sql.query.copies`,
:func:`sdoml_sql.query.catalog.derive_copies`).
"""

from __future__ import annotations

import functools

from sdoml_sql.catalog_builder import build as _build
from sdoml_sql.quality import stats as _stats
from sdoml_sql.query.catalog import derive_copies


def _with_copies(function):
    @functools.wraps(function)
    def committed(*args, **kwargs):
        kwargs.setdefault("derive", derive_copies)
        return function(*args, **kwargs)

    return committed


build_catalog = _with_copies(_build.build_catalog)
rebuild_catalog = _with_copies(_build.rebuild_catalog)
compute_frame_stats = _with_copies(_stats.compute_frame_stats)
stats = compute_frame_stats

__all__ = ["build_catalog", "rebuild_catalog", "compute_frame_stats", "stats"]

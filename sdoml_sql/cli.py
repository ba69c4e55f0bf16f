"""The ``sdoml-sql`` command line: a thin layer over the Python API, one command per function.

Errors raised on purpose (:class:`sdoml_sql.exceptions.SdomlError`) print as one line on
stderr and exit with status 1; usage errors exit with status 2 (click's convention).
"""

from __future__ import annotations

import contextlib
import sys
import warnings

import click

from sdoml_sql import config
from sdoml_sql.exceptions import EmptyResultWarning, SdomlError
from sdoml_sql.version import __version__


class _Group(click.Group):
    """A click group that turns :class:`SdomlError` into a one-line message and exit 1."""

    def invoke(self, ctx):
        warnings.simplefilter("ignore", EmptyResultWarning)  # printed as "hint:" lines instead
        try:
            return super().invoke(ctx)
        except SdomlError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except OSError as error:  # a path the user named cannot be read or written
            click.echo(f"error: {_os_error(error)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _os_error(error: OSError) -> str:
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}"


class _SqlCommand(click.Command):
    """A command whose SQL argument may start with a ``--`` comment: an argument starting
    ``--`` with whitespace before any ``=`` cannot be an option, so it is passed on as SQL
    (led by a newline, which SQL ignores and click does not take for an option)."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, ["\n" + a if _is_sql_comment(a) else a for a in args])


def _is_sql_comment(arg: str) -> bool:
    return arg.startswith("--") and any(c.isspace() for c in arg.partition("=")[0])


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="sdoml-sql")
def main():
    """SQL over the SDO ML v2 dataset: build a Parquet catalog of every per-frame header,
    query it with DuckDB, fetch frames as dask arrays, SunPy maps and movies.

    \b
    Example:
      make demo, then:
      sdoml-sql query "SELECT channel, count(*) FROM aia GROUP BY channel" --catalog demo-output/catalog
    """


store_options = [
    click.option("--mirror", type=click.Choice(["aws", "gcs"]), default=None,
                 help=f"Copy used for preset names (default: aws, the anonymous mirror; env {config.MIRROR_ENV})."),
    click.option("--billing-project", default=None, envvar=config.BILLING_ENV,
                 help="Google Cloud project billed for the requester-pays GCS bucket."),
]


def _setting(name: str):
    """A click callback that gives an option to :mod:`sdoml_sql.config` for the command
    (:func:`sdoml_sql.config.using`), so it reaches every store the command opens, those
    named in a manifest included."""
    def callback(ctx, param, value):
        if value is not None:
            ctx.with_resource(config.using(**{name: value}))
        return value
    return callback


access_options = [
    click.option("--endpoint-url", default=None, expose_value=False, callback=_setting("endpoint_url"),
                 help=f"Object-store endpoint for s3:// and gs:// stores, e.g. an emulator (env {config.ENDPOINT_ENV}; "
                      f"also {'/'.join(config.S3_ENDPOINT_ENVS)}, {config.GCS_EMULATOR_ENV})."),
    click.option("--store-timeout", "--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                 expose_value=False, callback=_setting("store_timeout"),
                 help=f"Seconds one remote object may take, retries included (env {config.STORE_TIMEOUT_ENV}; "
                      "default 120). --timeout is its older name."),
    click.option("--retries", type=click.IntRange(0, 20), default=None, expose_value=False,
                 callback=_setting("retries"),
                 help=f"Retries of a failed remote read (env {config.RETRIES_ENV}; default 5)."),
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None, expose_value=False,
                 callback=_setting("cache_dir"), help="Keep fetched chunks here; repeated fetches read nothing "
                                                      f"remote (env {config.CACHE_ENV})."),
]
store_options += access_options


def with_store_options(function):
    for option in reversed(store_options):
        function = option(function)
    return function


def with_remote_read_options(function):
    """Endpoint, timeout and retries: for commands that read remote objects but no chunks."""
    for option in reversed(access_options[:3]):
        function = option(function)
    return function


def with_access_options(function):
    """Endpoint, timeout, retries and cache options, for commands that reopen a catalog's stores."""
    for option in reversed(access_options):
        function = option(function)
    return function


# --- sources -----------------------------------------------------------------------------

@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--frames", default=None, type=click.IntRange(1), help="AIA frames per channel and year.")
@click.option("--hmi-frames", default=None, type=click.IntRange(1), help="HMI frames per component and year.")
@click.option("--eve-samples", default=None, type=click.IntRange(1), help="EVE samples (about 1 per minute).")
@click.option("--years", default=None, help="AIA years, comma separated (the last one carries the 2020 quirks).")
@click.option("--channels", default=None, help="AIA channels, comma separated (default: all nine).")
@click.option("--hmi-years", default=None,
              help="HMI years, comma separated, or 'aia' for the AIA years (default: 2010,2012); HMI frames "
                   "fall on the AIA days of a year, so AIA+HMI aligned samples can be made.")
@click.option("--no-images", is_flag=True, help="Write headers only; leave image chunks unwritten (fill 0).")
@click.option("--seed", default=0, show_default=True, help="Random seed: same seed, same store.")
@click.option("--chunk-frames", default=None, type=click.IntRange(1),
              help="Frames per chunk of the AIA and HMI arrays (default: 15, as in the real stores).")
@click.option("--layout", type=click.Choice(["v2", "v2a"]), default="v2", show_default=True,
              help="SDOML v2 (sdomlv2_small.zarr …) or SDOMLv2a (AIA.zarr, HMI.zarr, EVE_legacy.zarr: years "
                   "past 2020, HMI out of time order, flat EVE).")
@click.option("--overwrite", is_flag=True, help="Replace sample stores already in DIRECTORY (refused without it).")
@click.option("--progress/--quiet", default=None,
              help="Show a progress bar (default: for big image writes only), or not.")
def sample(directory, frames, hmi_frames, eve_samples, years, channels, hmi_years, no_images, seed, chunk_frames,
           layout, overwrite, progress):
    """Write sample AIA, HMI and EVE stores shaped like the real SDOML v2 (or v2a) ones into DIRECTORY.

    \b
    Example:
      sdoml-sql sample demo-output/small --frames 20 --channels 171A,193A --eve-samples 500
    """
    from sdoml_sql.exceptions import years_list
    from sdoml_sql.stores.sample import write_sample

    options = {
        "aia_frames": frames,
        "hmi_frames": hmi_frames,
        "eve_samples": eve_samples,
        "years": years_list(years, "--years"),
        "channels": _split(channels),
        "hmi_years": _hmi_years(hmi_years, years, layout),
        "chunk_frames": chunk_frames,
    }
    paths = write_sample(directory, images=not no_images, seed=seed, layout=layout, overwrite=overwrite,
                         progress=progress, **{k: v for k, v in options.items() if v is not None})
    for name, path in paths.items():
        click.echo(f"{name}\t{path}")


def _hmi_years(hmi_years: str | None, years: str | None, layout: str = "v2"):
    from sdoml_sql.exceptions import years_list

    if hmi_years is None:
        return None
    if hmi_years == "aia":
        from sdoml_sql.stores.sample import DEFAULT_YEARS

        return years_list(years, "--years") if years else DEFAULT_YEARS[layout]
    return years_list(hmi_years, "--hmi-years")


@main.command()
@click.argument("url")
@with_store_options
def tree(url, mirror, billing_project):
    """Print the groups and arrays of the store at URL (shapes, dtypes, chunks; never attrs).

    \b
    Example:
      sdoml-sql tree demo-output/stores/sdomlv2_hmi_small.zarr
    """
    from sdoml_sql.catalog_builder.inspect import tree as tree_text

    click.echo(tree_text(url, mirror=mirror, billing_project=billing_project))


@main.command()
@click.argument("url")
@click.argument("array_path")
@with_store_options
def keywords(url, array_path, mirror, billing_project):
    """List the per-frame header keys of ARRAY_PATH (such as 2010/171A) with types and an example.

    \b
    Example:
      sdoml-sql keywords demo-output/stores/sdomlv2_hmi_small.zarr 2010/Bz
    """
    from sdoml_sql.catalog_builder.inspect import keywords as keyword_rows

    rows = keyword_rows(url, array_path, mirror=mirror, billing_project=billing_project)
    width = max((len(r["key"]) for r in rows), default=3)
    for row in rows:
        click.echo(f"{row['key']:<{width}}  {row['type']:<9} {row['values']:>7}  {row['example']}")


# --- catalog ---------------------------------------------------------------------------------

catalog_option = click.option(
    "--catalog", type=click.Path(file_okay=False), default=None,
    help="Catalog directory or s3://, gs://, https:// (read-only) prefix "
         "(default: $SDOML_CATALOG, else ~/.local/share/sdoml-sql/catalog).")
progress_option = click.option("--progress/--quiet", default=True,
                               help="Show a progress bar (the functions' progress=), or not.")
break_lock_option = click.option("--break-lock", is_flag=True,
                                 help="Clear the expired lock of a dead build of a remote catalog.")


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


@main.command()
@click.option("--aia", default=None, help="AIA store: URL, path or preset (aia-small, aia, gcs:aia …).")
@click.option("--hmi", default=None, help="HMI store: URL, path or preset (hmi-small, hmi …).")
@click.option("--eve", default=None, help="EVE store: URL, path or preset (eve).")
@catalog_option
@click.option("--years", default=None, help="Only these years, comma separated.")
@click.option("--channels", default=None, help="Only these channels (171A,Bz …), comma separated.")
@click.option("--full", is_flag=True, help="Rewrite every partition, changed or not.")
@click.option("--read-ahead", default=None, type=click.IntRange(0),
              help="Source arrays downloading while one is parsed (default: 1 for remote stores, 0 for local).")
@progress_option
@click.option("--scheduler", default=None,
              help="Address of a dask.distributed scheduler to spread the harvest over (a local catalog needs "
                   "a shared filesystem; an s3:// or gs:// one does not).")
@break_lock_option
@with_store_options
def build(aia, hmi, eve, catalog, years, channels, full, read_ahead, progress, scheduler, break_lock, mirror,
          billing_project):
    """Harvest every per-frame header of the named stores into a Parquet catalog.

    \b
    Example:
      sdoml-sql build --aia demo-output/stores/sdomlv2_small.zarr --catalog demo-output/catalog --channels 171A
    """
    from sdoml_sql.exceptions import years_list
    from sdoml_sql.workflows import build_catalog

    with _client(scheduler) as client:
        report = build_catalog(aia=aia, hmi=hmi, eve=eve, catalog=catalog, years=years_list(years, "--years"),
                               channels=_split(channels), full=full, progress=progress, read_ahead=read_ahead,
                               client=client, mirror=mirror, billing_project=billing_project, break_lock=break_lock)
    _print_report(report, quiet=not progress)


@contextlib.contextmanager
def _client(scheduler: str | None):
    if scheduler is None:
        yield None
        return
    from distributed import Client

    try:
        client = Client(scheduler, timeout="3s")
    except OSError as error:
        raise SdomlError(f"cannot reach the dask scheduler at {scheduler}: {error}") from None
    with client:
        yield client


@main.command()
@catalog_option
@click.option("--full", is_flag=True, help="Rewrite every partition, changed or not.")
@click.option("--read-ahead", default=None, type=click.IntRange(0),
              help="Source arrays downloading while one is parsed (default: 1 for remote stores, 0 for local).")
@progress_option
@click.option("--billing-project", default=None, envvar=config.BILLING_ENV,
              help="Google Cloud project billed for the requester-pays GCS bucket.")
@click.option("--source", "sources", multiple=True, metavar="INSTRUMENT=STORE",
              help="Re-point an instrument to a store that moved (aia=PATH); repeatable.")
@break_lock_option
@with_access_options
def rebuild(catalog, full, read_ahead, progress, billing_project, sources, break_lock):
    """Re-read the sources in the catalog's manifest; rewrite only partitions that changed.

    \b
    Example:
      sdoml-sql rebuild --catalog demo-output/catalog --source aia=demo-output/stores/sdomlv2_small.zarr
    """
    from sdoml_sql.workflows import rebuild_catalog

    report = rebuild_catalog(catalog, sources=_pairs(sources, "--source"), full=full, progress=progress,
                             read_ahead=read_ahead, billing_project=billing_project, break_lock=break_lock)
    _print_report(report, quiet=not progress)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``("aia=PATH", …)`` → ``{"aia": "PATH", …}``."""
    pairs = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise click.BadParameter(f"{value!r}: give INSTRUMENT=STORE, e.g. aia=/data/sdomlv2_small.zarr",
                                     param_hint=option)
        pairs[name.strip().lower()] = target.strip()
    return pairs


def _print_report(report, quiet: bool = False) -> None:
    """The build's warnings (with ``--quiet`` one line counting them), then its summary."""
    if quiet and len(report.warnings) > 1:
        click.echo(f"warning: {len(report.warnings)} warnings, the first: {report.warnings[0]} "
                   "(all of them in manifest.json)", err=True)
    else:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(report.summary())


@main.command()
@click.argument("source")
@click.argument("directory", type=click.Path(file_okay=False))
@progress_option
@with_remote_read_options
def sync(source, directory, progress):
    """Copy or update the catalog at SOURCE (s3://, gs://, https:// or a directory) into DIRECTORY:
    only what changed.

    \b
    Example:
      sdoml-sql sync s3://my-bucket/sdoml-catalog catalog-mirror
    """
    from sdoml_sql.catalog_builder.sync import sync_catalog

    click.echo(sync_catalog(source, directory, progress=progress).summary())


# --- SQL -------------------------------------------------------------------------------------

@main.command(cls=_SqlCommand)
@click.argument("sql", required=False)
@catalog_option
@click.option("--file", "sql_file", type=click.Path(dir_okay=False), default=None,
              help="Read the SQL from this file (same as SQL = @FILE).")
@click.option("--format", "output_format", type=click.Choice(["table", "csv", "json", "parquet"]),
              default=None, help="Output format (default: table; parquet needs --output).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of stdout.")
@click.option("--query-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Stop the query after this many seconds (env {config.QUERY_TIMEOUT_ENV}; default: no limit).")
@with_access_options
def query(sql, catalog, sql_file, output_format, output, query_timeout):
    """Run one read-only SQL query on the catalog. SQL may be @FILE.sql or - (stdin).

    \b
    Example:
      sdoml-sql query "SELECT channel, count(*) AS n FROM aia GROUP BY channel" --catalog demo-output/catalog
    """
    import warnings

    from sdoml_sql.exceptions import EmptyResultWarning
    from sdoml_sql.query.catalog import query as run_query
    from sdoml_sql.query.catalog import query_text

    if output_format == "parquet" and not output:
        raise click.UsageError("--format parquet needs --output FILE")
    text = _sql_text(sql, sql_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmptyResultWarning)
        if output:
            run_query(text, catalog=catalog, query_timeout=query_timeout).write(output, output_format)
        else:
            click.echo(query_text(text, catalog, output_format or "table", query_timeout=query_timeout), nl=False)
    for warning in caught:
        if issubclass(warning.category, EmptyResultWarning):
            click.echo(f"hint: {warning.message}", err=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _sql_text(sql: str | None, sql_file: str | None) -> str:
    from sdoml_sql.query.sqlfiles import read_sql_file

    if sql_file:
        return read_sql_file(sql_file)
    if sql is None or sql == "-":
        return sys.stdin.read()
    if sql.startswith("@"):
        return read_sql_file(sql[1:])
    return sql


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@catalog_option
@click.argument("duckdb_args", nargs=-1, type=click.UNPROCESSED)
def shell(catalog, duckdb_args):
    """Start the DuckDB shell with the catalog's views and macros (extra arguments go to duckdb).

    \b
    Example:
      sdoml-sql shell --catalog demo-output/catalog -c "SELECT count(*) AS frames FROM frames"
    """
    from sdoml_sql.query.catalog import open_catalog, refuse_remote_shell

    refuse_remote_shell(catalog)  # before opening it: offline, opening would fail first
    sys.exit(open_catalog(catalog).shell(duckdb_args))


# --- fetch, maps, movies ---------------------------------------------------------------------

def _selection(sql: str, catalog):
    from sdoml_sql.query.catalog import query as run_query

    return run_query(_sql_text(sql, None), catalog=catalog)


downsample_option = click.option("--downsample", default=1, show_default=True, type=click.IntRange(1),
                                 help="Keep 1 pixel in N along each axis (512 → 512/N).")
method_option = click.option("--method", type=click.Choice(["stride", "mean"]), default="stride", show_default=True,
                             help="Downsample by taking every Nth pixel or the mean of N×N blocks.")
missing_option = click.option("--missing", type=click.Choice(["raise", "nan", "drop"]), default="raise",
                              show_default=True, help="Rows without a frame: fail, fill NaN frames, or drop them.")


def frames_into(output_type: click.Path):
    """The head shared by the commands that write the frames SQL selects into OUTPUT (movie,
    export): the SQL and OUTPUT arguments, --catalog, --downsample and --method."""

    def decorate(function):
        for decorator in (method_option, downsample_option, catalog_option,
                          click.argument("output", type=output_type), click.argument("sql")):
            function = decorator(function)
        return function

    return decorate


@main.command(cls=_SqlCommand)
@click.argument("sql")
@catalog_option
@click.option("--output", "-o", required=True, type=click.Path(),
              help="OUT.npy, OUT.zarr (headers in OUT.headers.parquet) or a directory of FITS files.")
@click.option("--format", "output_format", type=click.Choice(["npy", "zarr", "fits"]), default=None,
              help="Output format (default: from the suffix; no suffix means FITS).")
@downsample_option
@method_option
@missing_option
@click.option("--progress/--quiet", default=True, help="Show the plan line and a progress bar (progress=), or not.")
@with_access_options
def fetch(sql, catalog, output, output_format, downsample, method, missing, progress):
    """Fetch the frames of the rows SQL selects and write them to --output.

    \b
    Example:
      sdoml-sql fetch "SELECT year, channel, idx FROM aia WHERE EXPTIME < 2" --catalog demo-output/catalog
      --output demo-output/short.npy
    """
    from sdoml_sql.fetch import plan, write_frames
    from sdoml_sql.fetch.output import output_format as check_output

    check_output(output, output_format, missing)  # before any reading or printing
    selection = _selection(sql, catalog)
    if progress:
        click.echo(f"plan: {plan(selection, downsample=downsample, method=method, missing=missing)}", err=True)
    written = write_frames(selection, output, output_format, downsample, method, missing, progress=progress)
    click.echo(f"wrote {len(written)} file(s): {written[0]}" + (" …" if len(written) > 1 else ""))


@main.command(cls=_SqlCommand)
@frames_into(click.Path(dir_okay=False))
@click.option("--missing", type=click.Choice(["raise", "drop"]), default="raise", show_default=True,
              help="Rows without a frame: fail or leave them out.")
@click.option("--fps", default=10.0, show_default=True, type=click.FloatRange(min=0.1), help="Frames per second.")
@click.option("--scaling", type=click.Choice(["fixed", "frame"]), default="fixed", show_default=True,
              help="One colour range per channel, or one per frame.")
@click.option("--sortby", type=click.Choice(["date"]), default=None,
              help="Order frames by time (sortby=\"date\") instead of row order.")
@click.option("--sort-by-date", "sortby", flag_value="date", help="The same as --sortby date (its older name).")
@progress_option
@with_access_options
def movie(sql, output, catalog, downsample, method, missing, fps, scaling, sortby, progress):
    """Render the frames SQL selects as a movie: OUTPUT.mp4, .gif or .html.

    \b
    Example:
      sdoml-sql movie "SELECT * FROM nearest('aia', '171A', '2010-08-27', '2010-08-28', '12 minutes',
      '6 minutes')" demo-output/day.gif --missing drop --downsample 2 --catalog demo-output/catalog
    """
    from sdoml_sql.fetch.movies import movie as render_movie
    from sdoml_sql.fetch.movies import movie_suffix

    movie_suffix(output)
    written = render_movie(_selection(sql, catalog), output, downsample=downsample, method=method, missing=missing,
                           fps=fps, scaling=scaling, sortby=sortby, progress=progress)
    click.echo(f"wrote {written}")


@main.command(cls=_SqlCommand)
@frames_into(click.Path(file_okay=False))
@click.option("--missing", type=click.Choice(["drop", "nan", "raise"]), default="drop", show_default=True,
              help="Samples with a channel missing: leave out, NaN frame, or fail.")
@click.option("--normalize", type=click.Choice(["none", "sdoml"]), default="none", show_default=True,
              help="sdoml: AIA log10 + z-score (statistics stored beside the catalog), HMI clipped and scaled.")
@progress_option
@with_access_options
def export(sql, output, catalog, downsample, method, missing, normalize, progress):
    """Export the samples SQL selects to OUTPUT.zarr (one sample per chunk, rows in rows.parquet) for
    training at disk speed; rerun the same command to resume an interrupted export.

    \b
    Example:
      sdoml-sql export "SELECT * FROM aligned(['171A', 'Bz'], '2010-08-27', '2010-08-29', '12 minutes',
      '6 minutes')" demo-output/train.zarr --downsample 4 --catalog demo-output/catalog
    """
    from pathlib import Path

    finished = Path(output).exists()
    written = _selection(sql, catalog).export(output, downsample=downsample, method=method, missing=missing,
                                              normalize=normalize, progress=progress)
    click.echo(f"complete: {written} already holds this export" if finished else f"wrote {written}")


@main.command()
@click.argument("sql")
@click.argument("output", type=click.Path(dir_okay=False))
@catalog_option
@click.option("--lines", default=None, help="EVE lines to plot, comma separated (default: every selected line).")
@click.option("--row", default=0, show_default=True, type=click.IntRange(0), help="Frame selections: the row to plot.")
@with_access_options
def plot(sql, output, catalog, lines, row):
    """Plot what SQL selects to OUTPUT (PNG, PDF, SVG): EVE lines, or one frame as a map.

    \b
    Example:
      sdoml-sql plot 'SELECT time, "Fe XX_2", "He II" FROM eve ORDER BY time' demo-output/eve.png
      --catalog demo-output/catalog
    """
    from sdoml_sql.fetch.maps import plot as plot_selection

    plot_selection(_selection(sql, catalog), output, lines=_split(lines), row=row)
    click.echo(f"wrote {output}")


# --- frame quality ---------------------------------------------------------------------------

@main.command()
@catalog_option
@click.option("--years", default=None, help="Only these years, comma separated.")
@click.option("--channels", default=None, help="Only these channels (171A,Bz …), comma separated.")
@click.option("--full", is_flag=True, help="Recompute every partition, changed or not.")
@click.option("--workers", default=None, type=click.IntRange(1), help="Threads reading chunks (default: one per core).")
@progress_option
@click.option("--scheduler", default=None, help="Address of a dask.distributed scheduler to spread the chunks over.")
@with_access_options
def stats(catalog, years, channels, full, workers, progress, scheduler):
    """Compute pixel statistics of every frame (frame_stats, and the pixel flags of frame_quality).

    \b
    Example:
      sdoml-sql stats --catalog demo-output/catalog --years 2020 --channels 171A,193A
    """
    from sdoml_sql.exceptions import years_list
    from sdoml_sql.workflows import compute_frame_stats

    with _client(scheduler) as client:
        report = compute_frame_stats(catalog, years=years_list(years, "--years"), channels=_split(channels), full=full,
                                     progress=progress, client=client, workers=workers)
    click.echo(report.summary())


@main.command("plot-quality")
@click.argument("output", type=click.Path(dir_okay=False))
@catalog_option
@click.option("--start", default=None, help="First time (default: the catalog's first frame's day).")
@click.option("--stop", default=None, help="End time, excluded (default: the day after the last frame).")
@click.option("--bucket", default=None,
              help="Bucket length, e.g. '1 hour', '1 week' (default: the first of 1 minute, 6 minutes, … "
                   "giving at most 240 buckets; a chosen one may give up to 2,000).")
@click.option("--gap", default=None,
              help="A step between frames longer than this (a positive interval) is a gap (default: 30 minutes).")
def plot_quality_command(output, catalog, start, stop, bucket, gap):
    """Plot frames per bucket, gaps and flagged frames by flag, one row per channel, to OUTPUT.

    \b
    Example:
      sdoml-sql plot-quality --catalog demo-output/catalog demo-output/quality.png --start "2019-12-31 22:00"
      --stop "2020-01-01 04:00" --bucket "12 minutes"
    """
    from sdoml_sql.quality.plot import plot_quality
    from sdoml_sql.query.catalog import open_catalog

    plot_quality(open_catalog(catalog), output, start=start, stop=stop, bucket=bucket, gap=gap)
    click.echo(f"wrote {output}")


# --- the web explorer ------------------------------------------------------------------------

@main.command()
@catalog_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface, for a team; anyone reaching it can query).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the SQL page in the default browser.")
@click.option("--query-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Stop each query after this many seconds.")
@click.option("--get", "get_path", default=None, metavar="PATH",
              help="Answer one GET request for PATH (e.g. '/api/query?sql=…') without a server, print the body "
                   "and exit (status 1 on an error).")
@with_access_options
def serve(catalog, host, port, open_browser, query_timeout, get_path):
    """Serve a web explorer over the catalog: SQL page, frame pages, timeline, JSON API.

    \b
    Example:
      sdoml-sql serve --catalog demo-output/catalog
    """
    from sdoml_sql.query.catalog import open_catalog
    from sdoml_sql.web import Settings, get
    from sdoml_sql.web import serve as run_server

    settings = Settings(query_timeout=query_timeout)
    if get_path is not None:
        status, _, body = get(open_catalog(catalog), get_path, settings)
        if status != 200:
            raise SdomlError(_error_line(body))
        sys.stdout.buffer.write(body)
        return
    run_server(open_catalog(catalog), host, port, open_browser, settings,
               ready=lambda url: click.echo(f"serving {url} (Ctrl-C stops)", err=True))


def _error_line(body: bytes) -> str:
    import json

    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()


if __name__ == "__main__":
    main()

"""tools/eval.py: evaluate run folders (or checkpoint files) on the test split, one table row per run.

    python tools/eval.py runs/bouncing_sprites/simvp runs/bouncing_sprites/simvp_predgs [--format md|csv|json]

On other data: ``--set KEY=VALUE`` changes each run's config as ``tools/train.py --set`` does, for example
``--set data.root=/data/other data.num_test=200``.

Stochastic models (backbones with a ``sample`` method, e.g. srvp): ``--samples K`` draws K futures per test
sequence and reports two rows per run, "best of K" (per sequence and per metric, the sample closest to the
truth, as SVG and SRVP report) and "mean of K" (the average over samples).

    python tools/eval.py runs/bouncing_sprites/srvp --samples 100

Latent flow runs (temporal or joint phase): ``--ttt --ttt-steps 10`` predicts each test sequence after test-time
training of the flow head on it (reset before the next sequence), so every metric is measured for the TTT model.
"""
from __future__ import annotations

import argparse
import sys

from ..metrics import AVAILABLE, METRICS
from ..results.table import comparison_curves, format_table, table_cells, table_notes
from .common import ArgumentParser, friendly_errors, integer, program, setup_logging


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=program("eval"), description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of tools/train.py, or checkpoint files")
    p.add_argument("--checkpoint", choices=("best", "last"),
                   help="which checkpoint of a run folder (default: best, or last with a note when there is no best)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a value of each run's config by its dotted key (validated as in training), "
                        "e.g. --set data.root=/data/other data.num_test=200")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--metrics", nargs="+", choices=AVAILABLE, help="default: eval.metrics of each run's config")
    p.add_argument("--format", default="md", choices=("md", "csv", "json"))
    p.add_argument("--out", help="also write the table to this file")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--num-vis", type=integer(0), help="sequences drawn in each run's prediction grid")
    p.add_argument("--max-batches", type=integer(1), help="evaluate only this many batches (quick looks)")
    p.add_argument("--batch-size", type=integer(1))
    p.add_argument("--samples", type=int, metavar="K",  # 0 and below: evaluate_run says what is expected
                   help="futures drawn per test sequence for stochastic models: reports best of K and mean of K "
                        "(default: eval.num_samples of each run's config, else 1; deterministic models need 1)")
    p.add_argument("--ttt", action="store_true",
                   help="latent_flow runs: test-time training of the flow head on each test sequence before its "
                        "prediction, reset afterwards (rows and output files are marked 'TTT')")
    p.add_argument("--ttt-steps", type=int, default=10, help="Adam steps of --ttt per sequence (default 10)")
    p.add_argument("--ttt-lr", type=float, default=1e-4, help="learning rate of --ttt (default 1e-4)")
    p.add_argument("--no-images", action="store_true", help="do not write the PNG grid and curves")
    p.add_argument("--gif", action="store_true",
                   help="also write one animated GIF per shown test sequence (observed frames, then truth and "
                        "prediction side by side) into each run's eval/gifs folder")
    p.add_argument("--report", metavar="DIR",
                   help="write DIR/index.html: the table, the per-frame curves, the prediction grids and the GIFs of "
                        "every run side by side for the same test sequences (DIR holds every file it shows)")
    p.add_argument("--offline", action="store_true",
                   help="download nothing (as PDR_OFFLINE=1): LPIPS is n/a when its AlexNet weights are not cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (bars are shown on a terminal only)")
    return p


@friendly_errors
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging(offline=args.offline)
    from ..runtime import resolve_device
    from ..results.evaluation import evaluate_run
    from ..metrics import load_lpips

    device = resolve_device(args.device)
    lpips_model = None
    wants_lpips = args.metrics is None or any(METRICS[m].network == "lpips" for m in args.metrics)
    if wants_lpips:
        lpips_model, _ = load_lpips(device)  # one network for every run; the note comes from each run
    results = []
    for run in args.runs:
        res = evaluate_run(run, split=args.split, checkpoint=args.checkpoint, metrics=args.metrics, device=device,
                           overrides=args.overrides,
                           num_vis=args.num_vis, max_batches=args.max_batches, batch_size=args.batch_size,
                           save_images=not args.no_images, lpips_model=lpips_model, num_samples=args.samples,
                           ttt_steps=args.ttt_steps if args.ttt else 0, ttt_lr=args.ttt_lr,
                           show_progress=not args.no_progress)
        if args.gif:
            from ..results.report import save_run_gifs

            prefix = f"{args.split}_ttt{args.ttt_steps}" if args.ttt else args.split
            _write(res.unwritten, lambda: res.images.extend(save_run_gifs(res, res.out_dir / "gifs", prefix=prefix)))
        for image in res.images:
            print(f"[pdr] {res.name}: wrote {image}", file=sys.stderr)
        results.append(res)
    table = format_table(results, args.format)
    print(table)  # first: whatever cannot be written below, the numbers are not lost
    unwritten = [line for res in results for line in res.unwritten]
    if args.out:
        _write(unwritten, lambda: _write_table(args.out, table, results, not args.no_images))
    if args.report:
        from ..results.report import write_report

        def report():
            header, rows = table_cells(results)
            page = write_report(args.report, results, header, rows, table_notes(results), comparison_curves(results),
                                title=f"PDR evaluation ({args.split} split)")
            print(f"[pdr] wrote {page}", file=sys.stderr)

        _write(unwritten, report)
    if unwritten:
        print(f"error: the table above is complete, but {len(unwritten)} file(s) or folder(s) could not be written (a "
              "read-only folder? --no-images skips the pictures):\n  " + "\n  ".join(unwritten), file=sys.stderr)
        return 1
    return 0


def _write(unwritten: list, write) -> None:
    """Run ``write``; an OSError (a read-only folder, a full disk) is added to ``unwritten`` as "path: reason",
    once (the GIFs fail on the same read-only folder as the images)."""
    try:
        write()
    except OSError as exc:
        line = f"{exc.filename or '?'}: {exc.strerror or exc}"
        if line not in unwritten:
            unwritten.append(line)


def _write_table(out: str, table: str, results, images: bool) -> None:
    """``out`` holds the table; with several runs and images, ``<out stem>_per_frame.png`` their per-frame curves."""
    with open(out, "w") as fh:
        fh.write(table + "\n")
    if len(results) > 1 and images:
        from pathlib import Path

        from ..visualize import save_metric_curves

        path = Path(out)
        image = save_metric_curves(path.with_name(f"{path.stem}_per_frame.png"), comparison_curves(results),
                                   title="per predicted frame")
        print(f"[pdr] wrote {image}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

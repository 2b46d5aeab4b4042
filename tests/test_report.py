"""Look instead of read: row labels that fit, GIFs of the shown sequences, and the HTML report of tools/eval.py."""
from html.parser import HTMLParser
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from pdr.cli.eval import main as eval_main
from pdr.cli.train import main as train_main
from pdr.results.evaluation import RunResult
from pdr.results.table import comparison_curves
from pdr.visualize import _pyplot, metric_curves_figure, prediction_grid_figure, save_sequence_gif

TINY = [
    "model.backbone.hid_S=8", "model.backbone.hid_T=16", "model.backbone.N_T=2",
    "data.num_train=8", "data.num_val=4", "data.num_test=4", "data.batch_size=4", "train.max_steps=2",
    "train.tensorboard=false", "eval.metrics=[mse,psnr]", "eval.num_vis=2",
]


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 16, 64), (2, 40, 40)])
@pytest.mark.parametrize("labels", [None, ["simvp", "bouncing_sprites/simvp_predgs_l1_ssim"]])
def test_grid_row_labels_lie_inside_the_figure_and_clear_of_every_image(shape, labels):
    rng = np.random.default_rng(0)
    inputs, truth = rng.random((2, 4, *shape)), rng.random((2, 3, *shape))
    pred = truth if labels is None else {label: truth for label in labels}
    fig = prediction_grid_figure(inputs, truth, pred, title="a title")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        figure_box = fig.bbox
        images = [ax.get_window_extent(renderer) for ax in fig.axes if ax.images]
        texts = [ax.yaxis.label for ax in fig.axes if ax.yaxis.label.get_text()]
        assert len(texts) == 2 * (2 + (1 if labels is None else len(labels)))
        for text in texts:
            box = text.get_window_extent(renderer)
            assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1, text.get_text()
            assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1, text.get_text()
            assert not any(box.overlaps(image) for image in images), f"{text.get_text()!r} runs into an image"
    finally:
        _pyplot().close(fig)


@pytest.mark.parametrize("sequences, arms", [(1, 1), (4, 4), (6, 8)])
def test_grid_title_lies_above_the_first_row_however_tall_the_grid(sequences, arms):
    rng = np.random.default_rng(0)
    inputs, truth = rng.random((sequences, 10, 1, 16, 16)), rng.random((sequences, 10, 1, 16, 16))
    fig = prediction_grid_figure(inputs, truth, {f"arm {i}": truth for i in range(arms)}, title="same sequences")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        title = fig._suptitle.get_window_extent(renderer)
        assert fig.bbox.y0 <= title.y0 and title.y1 <= fig.bbox.y1
        column_titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.title.get_text()]
        assert len(column_titles) == 20  # t=1..10 over the inputs, t=11..20 over the truth
        assert title.y0 > max(box.y1 for box in column_titles), "the title runs into the column titles"
    finally:
        _pyplot().close(fig)


@pytest.mark.parametrize("runs", [2, 9, 16])
def test_the_curves_legend_lies_inside_the_figure_and_clear_of_every_panel(runs):
    rng = np.random.default_rng(0)
    names = [f"arm {i} with a long name (no model)" for i in range(runs)]
    curves = {metric: {name: rng.random(10) for name in names} for metric in ("mse", "mae", "ssim", "sharpness")}
    fig = metric_curves_figure(curves, title="per predicted frame")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [legend for ax in fig.axes if (legend := ax.get_legend()) is not None]
        assert len(legends) == 1
        assert [t.get_text() for t in legends[0].get_texts()] == names
        box = legends[0].get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes), "the legend covers a panel"
    finally:
        _pyplot().close(fig)


def test_a_run_keeps_its_colour_in_every_panel_and_the_legend_names_every_run():
    """Panels with different runs (a sampled run's best-of and mean-of curves where it has them) and a last
    panel with a plain curve: the legend lists all runs, each drawn as in the panels."""
    rng = np.random.default_rng(0)
    curves = {"mse": {"A (best of 4)": rng.random(5), "A (mean of 4)": rng.random(5), "B": rng.random(5)},
              "ssim": {"A": rng.random(5), "B": rng.random(5)}, "sharpness": rng.random(5)}
    fig = metric_curves_figure(curves)
    try:
        legend = next(legend for ax in fig.axes if (legend := ax.get_legend()) is not None)
        drawn = {text.get_text(): (line.get_color(), line.get_linestyle())
                 for text, line in zip(legend.get_texts(), legend.get_lines())}
        assert list(drawn) == ["A (best of 4)", "A (mean of 4)", "B", "A"]
        assert len(set(drawn.values())) == 4
        for ax, metric in zip(fig.axes, ("mse", "ssim")):
            for line, label in zip(ax.get_lines(), curves[metric]):
                assert (line.get_color(), line.get_linestyle()) == drawn[label], (metric, label)
    finally:
        _pyplot().close(fig)


def test_curves_have_a_row_per_table_row_best_and_mean_of_k_for_a_sampled_run():
    """The curves of eval, compare and the report: metrics in the table's order, one curve per table row."""
    plain = RunResult("simvp", {"mse": 1.0, "psnr": 20.0}, per_frame={"psnr": [21.0, 19.0], "mse": [0.5, 1.5]})
    sampled = RunResult("srvp", {"mse": 2.0}, per_frame={"mse": [1.0, 3.0]}, num_samples=4,
                        best_per_frame={"mse": [0.5, 1.0]})
    curves = comparison_curves([plain, sampled])
    assert list(curves) == ["mse", "psnr"]  # the metric registry's (and the table's) order
    assert curves["mse"] == {"simvp": [0.5, 1.5], "srvp (best of 4)": [0.5, 1.0], "srvp (mean of 4)": [1.0, 3.0]}
    assert curves["psnr"] == {"simvp": [21.0, 19.0]}


def test_gif_shows_observed_frames_then_truth_beside_prediction(tmp_path):
    # constant grey frames with distinct values: frame t of each phase is recognisable by its value
    t_in, t_out, h, w = 3, 2, 8, 12
    inputs = np.stack([np.full((1, h, w), v) for v in (0.0, 0.2, 0.4)])
    truth = np.stack([np.full((1, h, w), v) for v in (0.6, 1.0)])
    pred = np.stack([np.full((1, h, w), v) for v in (0.8, 0.4)])
    path = save_sequence_gif(tmp_path / "seq.gif", inputs, truth, pred, min_height=32)
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == t_in + t_out
    scale = 4  # 8 pixels enlarged to at least 32
    panel_w = w * scale
    header = frames.shape[1] - h * scale
    centre_y = header + h * scale // 2
    left, right = panel_w // 2, frames.shape[2] - panel_w // 2

    def grey(frame, x):
        return int(frames[frame, centre_y, x, 0])

    # the greys are scaled from the range of inputs and truth (0..1 here) to 0..255
    for t, v in enumerate((0.0, 0.2, 0.4)):
        assert grey(t, left) == pytest.approx(255 * v, abs=2)
        assert grey(t, right) == 235  # no prediction yet: an empty panel
    for t, (v_true, v_pred) in enumerate(((0.6, 0.8), (1.0, 0.4))):
        assert grey(t_in + t, left) == pytest.approx(255 * v_true, abs=2)
        assert grey(t_in + t, right) == pytest.approx(255 * v_pred, abs=2)
    # the caption with the frame index differs between frames whose images are equal (observed 0.4, predicted 0.4)
    assert not np.array_equal(frames[2, :header], frames[4, :header])


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [value for key, value in attrs if key in ("src", "href") and value]


class _Tables(HTMLParser):
    """The cells of each <table>, row by row."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None


def test_eval_writes_gifs_and_a_report_that_references_only_its_own_files(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    runs = []
    for name in ("simvp", "simvp_predgs"):
        extra = ["model.adapter.num_gaussians=16", "model.adapter.hidden=8"] if "predgs" in name else []
        work = tmp_path / name
        assert train_main(["--config", f"configs/advected_fields/{name}.yaml", "--set", *TINY, *extra,
                           "--work-dir", str(work), "--no-progress"]) == 0
        runs.append(work)
    report = tmp_path / "report"
    capsys.readouterr()
    assert eval_main([*map(str, runs), "--gif", "--report", str(report), "--device", "cpu"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    printed = [[c.strip() for c in line.strip().strip("|").split("|")] for line in printed]

    for work in runs:  # --gif: one GIF per shown sequence in each run's eval folder
        gifs = sorted((work / "eval" / "gifs").glob("*.gif"))
        assert [g.name for g in gifs] == ["test_1.gif", "test_2.gif"]
        assert iio.imread(gifs[0], index=None).shape[0] == 4 + 4  # advected_fields: 4 observed, 4 predicted

    page = report / "index.html"
    parser = _References()
    parser.feed(page.read_text())
    refs = parser.refs
    assert refs, "the report shows no files"
    for ref in refs:
        target = (report / ref).resolve()
        assert target.is_file(), f"{ref} does not exist"
        assert report.resolve() in target.parents, f"{ref} lies outside the report folder"
    gifs = [r for r in refs if r.endswith(".gif")]
    assert len(gifs) == 2 * 2 and len(set(gifs)) == 4  # every run, every shown sequence
    assert "per_frame.png" in refs
    text = page.read_text()
    tables = _Tables()
    tables.feed(text)
    assert tables.tables[0] == printed  # the page's metrics table is the one tools/eval.py printed, cell by cell
    assert printed[0][:3] == ["run", "MSE", "PSNR"] and [row[0] for row in printed[1:]] == ["simvp", "simvp_predgs"]
    assert "different test sequences" not in text  # both runs show the same sequences

    # the report folder can be moved: nothing points back at the run folders
    moved = tmp_path / "moved"
    report.rename(moved)
    assert all((moved / Path(ref)).is_file() for ref in refs)

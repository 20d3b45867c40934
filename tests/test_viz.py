"""The studio's figures (safecb/viz.py) on small arrays, and the Codebook map and Metrics tabs'
handlers against a real store with a real two-round Safe-CB run of the toy model."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
import torch

from db import Store
from jobs.runner import JobRunner, RunnerConfig, submit_run
from safecb import viz, world
from safecb.engine import SafeCBConfig
from safecb.engine.prompts import from_world
from safecb.engine.space import harmful_codes
from safecb.metrics import rate
from safecb.paths import ORACLE_DIR, TOY_MODEL_DIR
from ui import codebook_tab, metrics_tab
from ui.services import Services

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- pure functions
def test_projection_share_is_one_inside_the_space_and_zero_orthogonal():
    basis = np.eye(4)[:, :2]  # the space spanned by the first two axes
    rows = np.array([[3.0, -4, 0, 0], [0, 0, 0, 2], [1, 0, 1, 0], [0, 0, 0, 0]])
    share = viz.projection_share(rows, basis)
    assert share == pytest.approx([1.0, 0.0, 2**-0.5, 0.0])
    assert viz.projection_share(rows, 5 * basis) == pytest.approx(share)  # basis re-orthonormalised
    with pytest.raises(ValueError, match="basis"):
        viz.projection_share(rows, np.eye(3)[:, :2])


def test_prepare_rows_normalises_only_the_decoder():
    rows = np.array([[3.0, 4.0], [0.0, 2.0]])
    assert np.linalg.norm(viz.prepare_rows("decoder", rows), axis=1) == pytest.approx([1, 1])
    assert viz.prepare_rows("gen_head", rows) == pytest.approx(rows)


def test_umap_embedding_is_deterministic_for_a_seed():
    rows = np.random.default_rng(0).normal(size=(60, 5))
    first = viz.umap_embedding(rows, seed=0)
    viz._CACHE.clear()  # a second real fit, not a cache hit
    again = viz.umap_embedding(rows, seed=0)
    other = viz.umap_embedding(rows, seed=1)
    assert first.shape == (60, 2) and np.isfinite(first).all()
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)
    assert viz.umap_embedding(rows[:3]).shape == (3, 2)  # too few rows for UMAP: a plain layout


def _two_rounds(k=40, d=6, moved=(3, 7, 11, 20, 33)):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(k, d)).astype(np.float32)
    b = a.copy()
    b[list(moved)] += 2.0 * rng.normal(size=(len(moved), d)).astype(np.float32)
    return a, b


def test_codebook_map_moves_only_changed_rows_and_draws_their_arrows():
    a, b = _two_rounds()
    config = viz.CodebookMapConfig(max_arrows=3)
    m = viz.compute_codebook_map(a, b, np.eye(6)[:, :2], harmful=[1, 2], config=config)
    assert m.moved.sum() == 5 and set(m.codes[m.moved]) == {3, 7, 11, 20, 33}
    assert np.array_equal(m.pos_a[~m.moved], m.pos_b[~m.moved])
    assert not np.allclose(m.pos_a[m.moved], m.pos_b[m.moved])
    assert ((m.share_b >= 0) & (m.share_b <= 1)).all()

    fig = viz.codebook_map_figure(m, config, title="t", meta={"safecb": {"run": 1}})
    assert [t.name for t in fig.data] == ["codes", "harmful codes", "position in A"]
    drawn = sorted(c[0] for t in fig.data[:2] for c in t.customdata)
    assert drawn == list(range(40))  # every code once, its id in customdata
    assert sorted(c[0] for c in fig.data[1].customdata) == [1, 2]
    assert fig.data[1].marker.symbol == "diamond"
    assert len(fig.layout.annotations) == 3  # only the 3 largest movers get arrows
    assert fig.layout.coloraxis.colorbar.title.text.startswith("projection share,<br>B − A")
    # two rounds: the colour is what changed, on a scale centred on no change
    change = m.share_b - m.share_a
    colours = np.concatenate([np.asarray(t.marker.color) for t in fig.data[:2]])
    order = np.concatenate([[c[0] for c in t.customdata] for t in fig.data[:2]])
    assert np.allclose(colours, [change[list(m.codes).index(c)] for c in order])
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax > -1.0 and np.all(change[~m.moved] == 0)
    one = viz.codebook_map_figure(m, config, labels=("B", "B"))  # one round: its share, as before
    assert one.layout.coloraxis.colorbar.title.text == "projection<br>share"
    assert fig.layout.meta == {"safecb": {"run": 1}}


def test_codebook_map_of_one_round_without_space_has_no_arrows_or_colorbar():
    a, _ = _two_rounds()
    m = viz.compute_codebook_map(a, a, basis=None)
    fig = viz.codebook_map_figure(m, labels=("round 1", "round 1"))
    assert not m.moved.any() and m.share_b is None
    assert [t.name for t in fig.data] == ["codes"] and not fig.layout.annotations
    assert fig.layout.coloraxis.colorbar.title.text is None
    assert "uniform colour" in fig.layout.title.text


def test_large_codebooks_are_subsampled_keeping_priority_codes():
    codes = viz.select_codes(10_000, 100, [np.array([9_999, 5]), np.array([42])])
    assert len(codes) == 100 and {9_999, 5, 42} <= set(codes.tolist())
    assert viz.select_codes(50, 100, []).tolist() == list(range(50))


def _round(index, self_unsafe, accepted=True, annotations=None):
    m = {"round": index, "self_unsafe": self_unsafe, "adherence": 0.5, "n_harmful": 10, "n_benign": 4,
         "pairs": 3 * index, "accepted": accepted, "guard": "" if accepted else "benign change too large",
         "benign_change": 0.0, "seconds": 1.0}
    if annotations is not None:
        m["annotations"] = annotations
    return m


def test_metrics_figure_handles_rounds_without_annotations_and_marks_rejections():
    rounds = [_round(0, 0.8), _round(1, 0.5), _round(2, 0.6, accepted=False)]
    fig = viz.metrics_figure(rounds)
    names = [t.name for t in fig.data]
    assert names == ["self-judged unsafe (harmful prompts)", "own adherence (benign prompts)"]
    unsafe = fig.data[0]
    assert list(unsafe.y) == [0.8, 0.5, 0.6]
    assert all(lo >= 0 for lo in unsafe.error_y.arrayminus) and any(hi > 0 for hi in unsafe.error_y.array)
    assert any(a.text == "rejected" for a in fig.layout.annotations)
    table = viz.metrics_table(rounds)
    assert table["status"].tolist()[0] == "unedited" and table["status"].tolist()[2].startswith("rejected")
    assert table["oracle unsafe (harmful prompts)"].tolist() == ["—"] * 3


def test_metrics_figure_uses_oracle_intervals_and_fid():
    note = {"oracle_unsafe_train": {"value": 0.7, "ci": [0.5, 0.9], "n": 10}, "fid_toy": {"value": 12.0, "n": 4}}
    fig = viz.metrics_figure([_round(0, 0.8, annotations=note), _round(1, 0.4, annotations=note)])
    oracle = next(t for t in fig.data if t.name == "oracle unsafe (harmful prompts)")
    assert oracle.error_y.array[0] == pytest.approx(0.2) and oracle.error_y.arrayminus[0] == pytest.approx(0.2)
    assert any(t.name == "FID-toy" for t in fig.data)


def test_rate_from_share_matches_the_bootstrap_of_the_outcomes():
    assert viz.rate_from_share(0.3, 10, n_boot=200) == rate(np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0]), n_boot=200)


# ---------------------------------------------------------------- the two tabs on a real run
@pytest.fixture(scope="module")
def studio(tmp_path_factory, toy_backend, small_config):
    """Services over a fresh SQLite store holding one finished two-round generator-target run."""
    root = tmp_path_factory.mktemp("studio")
    store = Store.open(f"sqlite:///{root}/safecb.db")
    sets = world.build_prompt_sets()
    config = small_config(epsilon=-0.0, patience=5, max_rounds=2,  # always two rounds...
                          max_adherence_drop=1.0, max_benign_change=1.0)  # ...whatever the quality guard says
    run_id, job_id = submit_run(store, str(TOY_MODEL_DIR), config,
                                from_world(sets.train_harmful[:3], sets.train_benign[:2]))
    runner = JobRunner(store, RunnerConfig(str(TOY_MODEL_DIR), root / "runs", "cpu", str(ORACLE_DIR)))
    assert runner.run_next()
    assert store.get_job(job_id).status == "finished", store.get_job(job_id).error
    services = Services(backend=toy_backend, store=store, runs_root=root / "runs")
    yield services, run_id
    store.close()


@pytest.fixture
def empty(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/empty.db")
    yield Services(backend=None, store=store, runs_root=tmp_path / "runs", reference={"decoder": None})
    store.close()


def test_pickers_list_the_run_and_its_rounds(studio):
    services, run_id = studio
    update, status = codebook_tab.refresh_runs(services, None)
    assert update["value"] == run_id and "1 run" in status
    a, b, status = codebook_tab.rounds_for_run(services, run_id)
    assert a["value"] == -1 and [v for _, v in a["choices"]] == [-1, 0, 1, 2]
    assert b["value"] == 2 and "gen_head" in status


def test_draw_map_of_the_edit_and_inspect_a_code(studio):
    services, run_id = studio
    fig, status, key = codebook_tab.draw_map(services, run_id, -1, 2, "auto")
    assert fig is not None, status
    assert key == {"run": run_id, "a": -1, "b": 2, "codebook": "gen_head"}
    assert fig.layout.meta["safecb"] == key  # the hover inspector reads it
    assert "Harmful Space of round 2" in status and "moved" in status and "⚠" not in status
    assert "harmful codes marked by the engine's rule" in status
    assert fig.data[0].name == "codes" and fig.layout.coloraxis.colorbar.title.text

    a, b, text = codebook_tab.inspect_code(services, key, 5)
    assert a.dtype == np.uint8 and a.shape == (128, 128, 3) and b.shape == a.shape
    assert "code 5" in text and "projection share" in text
    payload = codebook_tab.patch_payload(services, {**key, "code": 5})
    assert payload["ok"] and payload["a"].startswith("data:image/png;base64,") and payload["label_a"] == "original"
    assert payload["b"] == payload["a"]  # a generator edit leaves the decoder, so the patch is the same

    fig, status, _ = codebook_tab.draw_map(services, run_id, 1, 1, "decoder")
    assert fig is not None and "no Harmful Space for decoder" in status


def test_marked_codes_are_the_engines_harmful_codes_of_the_mined_pairs(studio):
    services, run_id = studio
    mined = json.loads((services.artifacts(run_id).round_dir(1) / "pairs.json").read_text())
    harmful = torch.tensor([p["harmful_tokens"] for p in mined])
    safe = torch.tensor([p["safe_tokens"] for p in mined])
    benign = torch.tensor([g.tokens for g in services.store.list_generations(run_id, 0, limit=1000)
                           if g.settings["kind"] == "benign"])
    config = SafeCBConfig.from_dict(services.store.get_run(run_id).config["safecb"]).codes
    expected, _ = harmful_codes(harmful, safe, benign, services.backend.codebook_size, config)
    marked, notes, summary = codebook_tab.marked_codes(services, run_id, 1)
    assert marked == expected.tolist() and set(marked) <= set(notes)
    assert f"{len(marked)} harmful codes marked by the engine's rule" in summary
    assert codebook_tab.marked_codes(services, run_id, 0)[0] == []  # the unedited model has none


def test_patch_image_decodes_one_code(studio):
    services, _ = studio
    one = viz.patch_image(services.backend, services.reference, 3)
    assert one.shape == (32, 32, 3) and one.dtype == np.uint8
    with pytest.raises(ValueError, match="code must lie"):
        viz.patch_image(services.backend, services.reference, 512)


@pytest.mark.parametrize(
    "run, a, b, codebook, message",
    [
        (None, -1, 2, "auto", "Pick a run"),
        (999, -1, 2, "auto", "no run #999"),
        ("abc", -1, 2, "auto", "Not a run id"),
        ("RUN", -1, 7, "auto", "no finished round 7"),
        ("RUN", None, 2, "auto", "Pick round A"),
        ("RUN", "x", 2, "auto", "not a round"),
        ("RUN", -1, 2, "lm_head", "Unknown codebook"),
    ],
)
def test_draw_map_bad_input_gives_a_message_not_an_exception(studio, run, a, b, codebook, message):
    services, run_id = studio
    fig, status, key = codebook_tab.draw_map(services, run_id if run == "RUN" else run, a, b, codebook)
    assert fig is None and key is None
    assert status.startswith("⚠") and message in status


@pytest.mark.parametrize(
    "key, code, message",
    [
        (None, 5, "Draw a map first"),
        ("KEY", None, "Enter a code id"),
        ("KEY", -1, "whole number in [0, 511]"),
        ("KEY", 1.5, "whole number"),
        ("KEY", "abc", "whole number"),
        ({"run": 999, "a": 0, "b": 1, "codebook": "gen_head"}, 5, "no finished round"),
    ],
)
def test_inspect_code_bad_input(studio, key, code, message):
    services, run_id = studio
    key = {"run": run_id, "a": -1, "b": 2, "codebook": "gen_head"} if key == "KEY" else key
    a, b, text = codebook_tab.inspect_code(services, key, code)
    assert a is None and b is None and text.startswith("⚠") and message in text
    assert codebook_tab.patch_payload(services, {**(key or {}), "code": code})["ok"] is False


def test_metrics_tab_shows_curves_table_and_reading(studio):
    services, run_id = studio
    fig, table, text, status, worst, caption = metrics_tab.load_metrics(services, run_id)
    assert fig is not None and "3 round(s)" in status
    # the worst cases of the round the reading is about, beside it
    shown = services.store.get_run(run_id).best_round
    assert worst is not None and worst.ndim == 3 and f"Worst cases at round {shown}" in caption
    assert f"Stopped: {services.store.get_run(run_id).stopped}" in status  # from the store, not the run directory
    assert any(t.name == "oracle unsafe (harmful prompts)" for t in fig.data)
    assert table["round"].tolist() == [0, 1, 2] and "n=9" in table["self-judged unsafe (harmful prompts)"][0]
    assert "oracle unsafe rate" in text or "unedited model" in text
    for bad, message in ((None, "Pick a run"), (999, "no run #999")):
        fig, table, text, status, worst, _ = metrics_tab.load_metrics(services, bad)
        assert fig is None and table is None and worst is None and status.startswith("⚠") and message in status


def test_reading_is_honest_about_overlapping_intervals_and_rejections():
    note = lambda v, lo, hi: {"oracle_unsafe_train": {"value": v, "ci": [lo, hi], "n": 9}}  # noqa: E731
    rounds = [_round(0, 0.8, annotations=note(0.9, 0.7, 1.0)), _round(1, 0.5, annotations=note(0.6, 0.3, 0.9)),
              _round(2, 0.4, accepted=False, annotations=note(0.2, 0.0, 0.4))]
    text = metrics_tab.reading(rounds, best=1)
    assert "Round 1 (the best round) cut the oracle unsafe rate on harmful prompts from 0.90" in text
    assert "not conclusive" in text and "Round 2 was rejected" in text
    assert "no oracle figures" in metrics_tab.reading([_round(0, 0.8), _round(1, 0.5)])
    assert "what the model itself draws" not in text  # a generator edit: served is what the model draws
    drawn = {**note(0.2, 0.1, 0.3), "oracle_unsafe_train_model": {"value": 0.9, "ci": [0.7, 1.0], "n": 9}}
    text = metrics_tab.reading([rounds[0], _round(1, 0.5, annotations=drawn)], best=1)
    assert "what the model itself draws (its tokens through the original, public decoder) is 0.90" in text


def test_an_empty_store_says_what_to_do(empty):
    update, status = codebook_tab.refresh_runs(empty, None)
    assert update["choices"] == [] and "No runs yet" in status
    assert metrics_tab.load_metrics(empty, None)[3].startswith("⚠")


def test_tabs_build_inside_blocks(studio):
    services, _ = studio
    with gr.Blocks() as demo:
        with gr.Tab("Codebook map"):
            codebook_tab.build_codebook_tab(services)
        with gr.Tab("Metrics"):
            metrics_tab.build_metrics_tab(services)
    html = [b for b in demo.blocks.values() if isinstance(b, gr.HTML) and getattr(b, "server_fns", None)]
    assert len(html) == 1 and [f.__name__ for f in html[0].server_fns] == ["code_patches"]
    config = html[0].get_config()  # what the browser gets: the inspector's files from ui/static/, as they are
    static = codebook_tab.STATIC_DIR
    assert config["js_on_load"] == (static / "codebook_inspector.js").read_text()
    assert "plotly_hover" in config["js_on_load"]
    assert config["css_template"] == (static / "codebook_inspector.css").read_text()
    assert config["html_template"] == (static / "codebook_inspector.html").read_text()
    assert config["props"]["map_id"] == codebook_tab.MAP_ELEM_ID
    plots = [b for b in demo.blocks.values() if isinstance(b, gr.Plot)]
    assert codebook_tab.MAP_ELEM_ID in [p.elem_id for p in plots]


def test_paired_separation_counts_positions_whose_harmful_code_lies_right_of_its_partner():
    harmful = np.array([[2.0, 0.0], [1.0, 5.0], [0.0, 0.0], [3.0, 1.0]])
    safe = np.array([[1.0, 9.0], [1.5, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert viz.paired_separation(harmful, safe) == 0.5  # rows 0 and 3; a tie is not "right of"
    assert viz.paired_separation(safe + 10, safe) == 1.0
    with pytest.raises(ValueError, match="paired"):
        viz.paired_separation(harmful, safe[:3])


def test_the_harmful_space_plane_puts_harmful_codes_right_of_safe_ones():
    rng = np.random.default_rng(0)
    d = 6
    direction = np.zeros(d)
    direction[2] = 1.0
    safe = rng.normal(size=(40, d))
    harmful = safe + 3.0 * direction  # each harmful code = its safe code moved along the space
    for basis in (-direction[:, None], np.stack([direction, np.eye(d)[4]], axis=1)):
        h_xy, s_xy, names = viz.harmful_space_plane(harmful, safe, basis)
        assert h_xy.shape == (40, 2) and s_xy.shape == (40, 2)
        np.testing.assert_allclose(h_xy[:, 0] - s_xy[:, 0], 3.0)  # x measures the move, oriented to the right
        np.testing.assert_allclose(h_xy[:, 1], s_xy[:, 1])  # the other axis does not see it
    assert names == ("Harmful Space, direction 1", "Harmful Space, direction 2")
    _, _, one = viz.harmful_space_plane(harmful, safe, direction[:, None])
    assert one[1] == "largest spread outside it"
    fig = viz.harmful_space_figure(h_xy, s_xy, names, title="t")
    assert [len(t.x) for t in fig.data] == [40, 40] and fig.layout.xaxis.title.text.startswith("Harmful Space")
    with pytest.raises(ValueError, match="share d"):
        viz.harmful_space_plane(harmful, safe, np.ones((d + 1, 1)))


def test_code_contrast_scores_codes_the_harmful_prompts_draw_and_the_rewrites_do_not():
    harmful = np.array([[0, 0, 1, 2], [0, 0, 2, 2]])  # code 2 only in harmful images
    rewrite = np.array([[0, 0, 1, 3], [0, 0, 3, 3]])  # code 3 only in the rewrites'
    score = viz.code_contrast(harmful, rewrite, 5)
    assert score[2] > 0 > score[3] and score[0] == pytest.approx(0.0) and score[1] == pytest.approx(0.0)
    assert score[4] == pytest.approx(0.0)  # drawn by neither: the prior alone
    with pytest.raises(ValueError, match="token ids"):
        viz.code_contrast(np.array([7]), np.array([0]), 5)

"""Selection by perplexity: Algorithm 1 against a literal transcription, baselines and error mining
against brute force, bin edges, redistribution, bad input, and the `oxa select` command."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from decimal import Decimal

import numpy as np
import pytest

from oxa.errors import OxaError, RecordError
from oxa.selection import (
    Binning,
    gaussian_targets,
    occurrence_rank,
    select_errors,
    select_gaussian,
    select_highest,
    select_interval,
    select_lowest,
    select_random,
    take_capped,
)

# ---------------------------------------------------------------------------------------------------
# Independent transcriptions of the authors' algorithm (simple loops, written from the paper and the
# reference script make_OXA_MLE_data.py; the paper's single pass per bin with a global per-query count).


def literal_targets(total, mu, sigma, lo, hi, width):
    num_bins = int(round((hi - lo) / width))
    pdf = []
    for i in range(num_bins):
        mid = lo + (i + 0.5) * width
        pdf.append((1.0 / (sigma * math.sqrt(2 * math.pi))) * math.exp(-0.5 * ((mid - mu) / sigma) ** 2))
    s = sum(pdf)
    desired = [p / s * total for p in pdf]
    counts = [int(math.floor(d)) for d in desired]
    fractions = [(d - math.floor(d), i) for i, d in enumerate(desired)]
    fractions.sort(key=lambda x: x[0], reverse=True)
    for k in range(total - sum(counts)):
        counts[fractions[k][1]] += 1
    return counts


def literal_algorithm1(records, total, mu, sigma, lo, hi, width, cap):
    num_bins = int(round((hi - lo) / width))
    bins = defaultdict(list)
    for i, r in enumerate(records):
        if r.get("correct") is not True:
            continue
        p = r.get("ppl")
        if p is None or not math.isfinite(p) or p < lo or p > hi:
            continue
        idx = int((p - lo) / width + 1e-9)
        if idx >= num_bins:
            idx = num_bins - 1
        bins[idx].append(i)
    targets = literal_targets(total, mu, sigma, lo, hi, width)
    count = defaultdict(int)
    chosen, passed_over = [], 0
    for b in range(num_bins):
        taken = 0
        for i in sorted(bins[b], key=lambda i: records[i]["n_tokens"], reverse=True):
            q = records[i]["query"]
            if taken < targets[b] and count[q] < cap:
                chosen.append(i)
                count[q] += 1
                taken += 1
            elif taken < targets[b]:
                passed_over += 1
    return chosen, passed_over


def brute_lowest(records, n, cap, keep, key):
    """Each query's `cap` best records under `key`, then the global best n of those."""
    per_query = defaultdict(list)
    for i, r in enumerate(records):
        if keep(r):
            per_query[r["query"]].append(i)
    finalists = []
    for idx in per_query.values():
        finalists += sorted(idx, key=lambda i: key(records[i]))[:cap]
    return sorted(finalists, key=lambda i: key(records[i]))[:n]


def make_records(n, n_queries, seed, *, p_correct=0.8):
    rng = np.random.default_rng(seed)
    lengths = rng.permutation(n) * 3 + 10  # unique lengths
    ppl = np.round(rng.lognormal(0.95, 0.28, n), 6)
    ppl[rng.choice(n, n // 100, replace=False)] = 2.5  # exactly on a bin edge
    records = []
    for i in range(n):
        records.append({"id": i, "query": f"q{rng.integers(n_queries)}", "response": "r" * int(rng.integers(1, 50)),
                        "ppl": float(ppl[i]), "n_tokens": int(lengths[i]), "correct": bool(rng.random() < p_correct)})
    records[3]["ppl"] = float("nan")
    records[4]["ppl"] = None
    records[5]["ppl"] = float("inf")
    del records[6]["ppl"]
    return records


# ---------------------------------------------------------------------------------------------------
# Targets and bins


def test_paper_targets():
    t = gaussian_targets(50_000, Binning(1.0, 5.0, 0.05), mu=2.5, sigma=0.25)
    assert len(t) == 80 and t.sum() == 50_000
    assert (t > 0).sum() == 42 and t.max() == 3970


@pytest.mark.parametrize(("n", "mu", "sigma"), [(50_000, 2.5, 0.25), (50_000, 3.0, 0.25), (777, 2.13, 0.1),
                                                (12_345, 1.7, 0.5), (5, 4.9, 0.25)])
def test_targets_match_reference(n, mu, sigma):
    assert gaussian_targets(n, Binning(1.0, 5.0, 0.05), mu=mu, sigma=sigma).tolist() == literal_targets(
        n, mu, sigma, 1.0, 5.0, 0.05)


def test_bin_edges_are_exact():
    b = Binning(1.0, 5.0, 0.05)
    edges = np.array([float(Decimal("1.0") + k * Decimal("0.05")) for k in range(81)])
    idx = b.index(edges)
    assert idx[:80].tolist() == list(range(80))  # every lower edge opens its own bin (2.5 -> bin 30)
    assert idx[80] == 79  # ppl == max belongs to the last bin
    assert b.index(np.array([2.5]))[0] == 30
    assert b.index(edges[1:80] - 1e-7).tolist() == list(range(79))  # just below an edge: the bin before
    assert b.index(np.array([0.999999, 5.000001, np.nan, np.inf, -np.inf])).tolist() == [-1] * 5
    assert Binning(0.0, 1.0, 0.3).n_bins == 4  # ceil: a partial last bin


# ---------------------------------------------------------------------------------------------------
# The vectorised capped walk


def test_capped_walk_equals_loop():
    rng = np.random.default_rng(1)
    group = rng.integers(0, 40, 500)
    order = rng.permutation(500)
    assert occurrence_rank(np.array([3, 1, 3, 3, 1])).tolist() == [0, 0, 1, 2, 1]
    for cap, n in [(1, 30), (2, 1000), (3, 70)]:
        count, expect, passed = defaultdict(int), [], 0
        for i in order:
            if len(expect) == n:
                break
            if count[group[i]] < cap:
                count[group[i]] += 1
                expect.append(i)
            else:
                passed += 1
        kept, skipped = take_capped(order, group, cap, n)
        assert kept.tolist() == expect and skipped == passed


# ---------------------------------------------------------------------------------------------------
# Gaussian


@pytest.mark.parametrize(("seed", "cap", "n", "mu"), [(0, 1, 800, 2.5), (1, 1, 1500, 3.0), (2, 2, 1200, 2.2),
                                                      (3, 3, 400, 2.5)])
def test_gaussian_equals_authors_algorithm(seed, cap, n, mu):
    records = make_records(3000, 700, seed)
    sel = select_gaussian(records, n, mu=mu, max_per_query=cap, seed=seed)
    expect, passed_over = literal_algorithm1(records, n, mu, 0.25, 1.0, 5.0, 0.05, cap)
    assert sel.indices.tolist() == sorted(expect) and sel.stats["skipped_query_cap"] == passed_over
    assert sel.records == [records[i] for i in sorted(expect)]
    assert len(set(sel.indices.tolist())) == len(sel.indices)
    queries = [r["query"] for r in sel.records]
    assert max(queries.count(q) for q in set(queries)) <= cap
    assert sel.stats["selected"] == len(expect) and sel.stats["no_ppl"] == sum(r["correct"] for r in records[3:7])
    assert sel.selected_hist.sum() == len(expect) and (sel.selected_hist <= sel.target).all()


def test_gaussian_counts_and_filters():
    records = make_records(2000, 2000, 7)
    sel = select_gaussian(records, 300)
    s = sel.stats
    n_correct = sum(r["correct"] is True for r in records)
    assert s["not_correct"] == len(records) - n_correct
    assert s["no_ppl"] == sum(1 for r in records[3:7] if r["correct"])
    in_range = [r for r in records if r["correct"] and r.get("ppl") is not None and 1.0 <= r["ppl"] <= 5.0]
    assert s["eligible"] == len(in_range)
    assert all(r["correct"] and 1.0 <= r["ppl"] <= 5.0 for r in sel.records)
    everything = select_gaussian(records, 300, verified_only=False)
    assert "not_correct" not in everything.stats
    assert everything.stats["eligible"] > s["eligible"]


def test_gaussian_deterministic_and_ties_random():
    records = [{"query": f"q{i}", "ppl": 2.5, "n_tokens": 100, "correct": True} for i in range(50)]
    a = select_gaussian(records, 10, seed=1).indices.tolist()
    assert a == select_gaussian(records, 10, seed=1).indices.tolist()
    draws = {tuple(select_gaussian(records, 10, seed=s).indices.tolist()) for s in range(5)}
    assert len(draws) > 1  # equal lengths: ties are broken by the seed, not by input order


def test_length_falls_back_to_response_text():
    records = [{"query": f"q{i}", "ppl": 2.51, "response": "x" * (i + 1), "correct": True} for i in range(20)]
    sel = select_gaussian(records, 3, mu=2.525, sigma=0.01)  # all mass in bin [2.50, 2.55): the 3 longest
    assert sel.indices.tolist() == [17, 18, 19]


def supply(bin_counts, *, query_prefix="q"):
    """Records with PPL at the centre of each requested bin, all correct, distinct queries."""
    records = []
    for b, k in bin_counts.items():
        for j in range(k):
            records.append({"query": f"{query_prefix}{b}-{j}", "ppl": 1.0 + (b + 0.5) * 0.05, "n_tokens": j + 1,
                            "correct": True})
    return records


def test_redistribute_fills_from_nearest_bins():
    n = 2000
    t = gaussian_targets(n, Binning(1.0, 5.0, 0.05), mu=2.5, sigma=0.25)
    assert t[29] > t[31] > 0  # bin 29 (centre 2.475) is nearer mu than bin 31 (2.575)
    counts = {b: int(t[b]) + 100 for b in range(80) if t[b] > 0 and b != 30}
    records = supply(counts)  # bin 30 has no supply at all
    plain = select_gaussian(records, n)
    assert plain.stats["selected"] == n - t[30] and plain.short_bins == [30]
    filled = select_gaussian(records, n, redistribute=True)
    assert filled.stats["selected"] == n and filled.stats["redistributed"] == t[30]
    moved = filled.moved_in
    assert moved[29] == min(100, t[30]) and moved[31] == t[30] - moved[29] and moved.sum() == t[30]
    assert set(np.flatnonzero(moved)) <= {29, 31}


def test_redistribute_stops_at_total_supply_and_respects_cap():
    records = supply({20: 5, 40: 5, 60: 5}) + supply({40: 5}, query_prefix="q")  # second copies: same queries
    sel = select_gaussian(records, 100, redistribute=True)
    assert sel.stats["selected"] == 15  # 15 distinct queries: caps block the duplicates
    assert len({r["query"] for r in sel.records}) == 15


# ---------------------------------------------------------------------------------------------------
# Baselines and error mining


def test_errors_equal_brute_force():
    records = make_records(3000, 600, 11, p_correct=0.4)
    for cap, n in [(1, 200), (2, 350), (1, 5000)]:
        sel = select_errors(records, n, max_per_query=cap)
        ok = lambda r: r["correct"] is False and r.get("ppl") is not None and math.isfinite(r["ppl"]) and r["ppl"] >= 1.2
        unique = [r for r in records if ok(r)]
        expect = brute_lowest(records, n, cap, ok, key=lambda r: (r["ppl"], r["n_tokens"]))
        ties = len({r["ppl"] for r in unique}) < len(unique)
        if not ties:
            assert sel.indices.tolist() == sorted(expect)
        else:  # equal PPLs (the 2.5 block) may break either way: compare the PPL multiset
            assert sorted(records[i]["ppl"] for i in sel.indices) == sorted(records[i]["ppl"] for i in expect)
        assert all(r["correct"] is False and r["ppl"] >= 1.2 for r in sel.records)
    assert select_errors(records, 50).stats["outside_ppl_bounds"] == sum(
        1 for r in records if r["correct"] is False and r.get("ppl") is not None and r["ppl"] < 1.2)


def test_errors_need_verdicts():
    with pytest.raises(OxaError, match="oxa verify"):
        select_errors([{"query": "a", "ppl": 2.0}], 1)


def test_lowest_and_highest_equal_brute_force():
    records = make_records(2000, 300, 5)
    for r in records:  # unique PPLs so the answer is unique
        if r.get("ppl") is not None and math.isfinite(r["ppl"]):
            r["ppl"] += r["id"] * 1e-9
    ok = lambda r: r["correct"] is True and r.get("ppl") is not None and math.isfinite(r["ppl"])
    low = select_lowest(records, 150, max_per_query=2)
    assert low.indices.tolist() == sorted(brute_lowest(records, 150, 2, ok, key=lambda r: r["ppl"]))
    high = select_highest(records, 150)
    assert high.indices.tolist() == sorted(brute_lowest(records, 150, 1, ok, key=lambda r: -r["ppl"]))


def test_random_and_interval():
    records = make_records(2000, 400, 9)
    a, b = select_random(records, 200, seed=3), select_random(records, 200, seed=3)
    assert a.indices.tolist() == b.indices.tolist()
    assert a.indices.tolist() != select_random(records, 200, seed=4).indices.tolist()
    assert len({r["query"] for r in a.records}) == 200 and all(r["correct"] for r in a.records)
    iv = select_interval(records, 10_000, ppl_min=2.5, ppl_max=3.0, max_per_query=2)
    pool = [r for r in records if r["correct"] is True and r.get("ppl") is not None and 2.5 <= r["ppl"] <= 3.0]
    per_query = defaultdict(int)
    for r in pool:
        per_query[r["query"]] += 1
    assert len(iv.indices) == sum(min(2, c) for c in per_query.values())  # everything the caps allow
    assert all(2.5 <= r["ppl"] <= 3.0 for r in iv.records)


# ---------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_names_record_and_field():
    with pytest.raises(RecordError, match=r"no record has the PPL field 'ppl'.*fields present: query"):
        select_gaussian([{"query": "a"}], 1, source="in.jsonl")
    with pytest.raises(RecordError, match=r"in.jsonl: record 2: field 'ppl' must be a number"):
        select_lowest([{"query": "a", "ppl": 1.5}, {"query": "b", "ppl": "high"}], 1, source="in.jsonl")
    with pytest.raises(RecordError, match=r"record 1: group field 'query' is missing"):
        select_random([{"question": "a", "ppl": 1.5}], 1)
    with pytest.raises(RecordError, match=r"record 1: field 'correct' must be true, false or null"):
        select_lowest([{"query": "a", "ppl": 1.5, "correct": "yes"}], 1)
    with pytest.raises(RecordError, match=r"neither a length field 'n_tokens' nor a text response"):
        select_gaussian([{"query": "a", "ppl": 2.5}], 1)
    with pytest.raises(OxaError, match="max_per_query"):
        select_lowest([{"query": "a", "ppl": 1.5}], 1, max_per_query=0)


# ---------------------------------------------------------------------------------------------------
# The command


def run_cli(args, capsys):
    from oxa.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_cli_gaussian_writes_records_and_histogram(tmp_path, capsys):
    from oxa.io import read_records, write_records

    records = make_records(2000, 500, 4)
    src = tmp_path / "scored.jsonl"
    write_records(src, records)
    out = tmp_path / "ce.jsonl"
    code, err = run_cli([ "select", str(src), "-o", str(out), "--n", "300", "--seed", "2"], capsys)
    assert code == 0, err
    expect = select_gaussian(read_records(src), 300, seed=2)
    assert read_records(out) == expect.records
    report = json.loads((tmp_path / "ce.hist.json").read_text())
    assert report["stats"]["selected"] == len(expect.records) == sum(row["selected"] for row in report["bins"])
    assert sum(row["target"] for row in report["bins"]) == 300 and len(report["bins"]) == 80
    assert (tmp_path / "ce.hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "selected" in err and f"{len(expect.records)} of 300" in err

    cfg = tmp_path / "select.yaml"
    cfg.write_text(f"input: {src}\noutput: {tmp_path / 'ul.parquet'}\nmethod: errors\nn: 40\nmin_ppl: 2.0\n")
    code, err = run_cli(["select", "--config", str(cfg), "--n", "25"], capsys)
    assert code == 0, err
    mined = read_records(tmp_path / "ul.parquet")
    assert len(mined) == 25 and all(r["correct"] is False and r["ppl"] >= 2.0 for r in mined)


def test_cli_errors_are_one_line(tmp_path, capsys):
    src = tmp_path / "raw.jsonl"
    src.write_text('{"query": "a", "response": "b"}\n')
    code, err = run_cli(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--n", "1"], capsys)
    assert code == 2 and "raw.jsonl" in err and "'ppl'" in err
    code, err = run_cli(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--n", "1", "--method", "best"], capsys)
    assert code == 2 and "method" in err
    assert not (tmp_path / "o.jsonl").exists()
    code, err = run_cli(["select", str(src), "-o", str(src), "--n", "1"], capsys)
    assert code == 2 and "overwrite the input" in err


def test_plot_has_target_and_log_scale(tmp_path):
    from oxa.plots import plot_ppl_histograms

    rng = np.random.default_rng(0)
    edges = Binning(1.0, 5.0, 0.05).edges
    target = gaussian_targets(500, Binning(1.0, 5.0, 0.05), mu=2.5, sigma=0.25)
    path = plot_ppl_histograms({"pool": rng.lognormal(1, 0.3, 100_000), "selected": rng.normal(2.5, 0.25, 500)},
                               tmp_path / "h.png", target=target, bin_edges=edges, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_unverified_input_is_flagged_and_zero_n_selects_nothing():
    records = [{"query": f"q{i}", "ppl": 2.5, "n_tokens": i} for i in range(10)]
    sel = select_lowest(records, 4)
    assert sel.stats["no_verdicts"] == 10 and sel.stats["selected"] == 4
    assert "no_verdicts" not in select_lowest([dict(r, correct=True) for r in records], 2).stats
    empty = select_lowest(records, 0)
    assert empty.records == [] and empty.stats["skipped_query_cap"] == 0


def test_side_paths_keep_the_output_stem():
    from oxa.selection import side_paths

    assert [p.name for p in side_paths("/d/ce.v2.jsonl")] == ["ce.v2.hist.json", "ce.v2.hist.png"]


def test_arrow_columns_equal_record_columns(tmp_path):
    from oxa.io import read_records, write_records
    from oxa.selection import extract_columns, read_columns, read_rows

    records = make_records(500, 80, 12)
    records[7]["correct"] = None
    for name in ("s.jsonl", "s.parquet"):
        write_records(tmp_path / name, records)
        back = read_records(tmp_path / name)
        fast = read_columns(tmp_path / name, length_field="n_tokens")
        slow = extract_columns(back, length_field="n_tokens")
        assert fast is not None
        np.testing.assert_array_equal(fast.ppl, slow.ppl)
        np.testing.assert_array_equal(fast.correct, slow.correct)
        np.testing.assert_array_equal(fast.length, slow.length)
        # codes may be numbered differently; they must induce the same partition
        assert len(set(zip(fast.group.tolist(), slow.group.tolist()))) == len(set(slow.group.tolist()))
        assert read_rows(tmp_path / name, fast)(np.array([0, 3, 499])) == [back[0], back[3], back[499]]
        sel_fast, sel_slow = select_gaussian(fast, 120, seed=1), select_gaussian(back, 120, seed=1)
        assert sel_fast.indices.tolist() == sel_slow.indices.tolist() and sel_fast.records == []


def test_irregular_files_take_the_record_reader(tmp_path, capsys):
    from oxa.selection import read_columns

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"query": "a", "ppl": 2.0}\n{"query": 7, "ppl": 2.1}\n')
    assert read_columns(mixed) is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "ppl": 1.5, "n_tokens": 3, "correct": true}\n{oops\n'
                   '{"query": "b", "ppl": 1.6, "n_tokens": 4, "correct": true}\n')
    assert read_columns(bad) is None
    code, err = run_cli(["select", str(bad), "-o", str(tmp_path / "o.jsonl"), "--n", "5", "--method", "lowest"], capsys)
    assert code == 2 and "bad.jsonl:2" in err
    code, err = run_cli(["select", str(bad), "-o", str(tmp_path / "o.jsonl"), "--n", "5", "--method", "lowest",
                         "--skip-bad"], capsys)
    assert code == 0 and [json.loads(x)["query"] for x in (tmp_path / "o.jsonl").read_text().splitlines()] == ["a", "b"]
    assert "malformed lines skipped" in err


def test_fractional_lengths_rank_like_integers():
    records = [{"query": f"q{i}", "ppl": 2.51, "n_tokens": x, "correct": True}
               for i, x in enumerate([3.5, 10.25, 0.5, 7.0, 10.25, 1e12])]
    picked = select_gaussian(records, 3, mu=2.525, sigma=0.01, seed=0).indices.tolist()
    assert picked == [1, 4, 5]  # the longest three, whatever their type or magnitude


def test_plots_and_selection_do_not_import_each_other():
    """oxa.plots draws bins from oxa.binning; importing it must not pull in the selection package."""
    import subprocess
    import sys

    code = "import sys, oxa.plots; print('oxa.selection' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The relevance benchmark's metrics against figures worked out by hand, and the judged set's integrity.

The metrics live in benchmarks/search_relevance.py, the code whose figures docs/SEARCH.md
reports; it is loaded by path because benchmarks/ is not a package tests may import.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "search_relevance.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("search_relevance", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()
LOG2_3 = math.log2(3)


def test_dcg_sums_graded_gains_over_log_ranks():
    # 7/log2(2) + 3/log2(3) + 0/log2(4) + 1/log2(5)
    assert bench.dcg([3, 2, 0, 1]) == pytest.approx(7 + 3 / LOG2_3 + 1 / math.log2(5))
    assert bench.dcg([3, 2, 0, 1]) == pytest.approx(9.32347, abs=1e-5)
    assert bench.dcg([]) == 0.0


def test_ndcg_is_one_for_the_ideal_order_and_less_for_a_swap():
    assert bench.ndcg([3, 2, 1], [1, 2, 3]) == pytest.approx(1.0)
    # (3 + 7/log2 3) / (7 + 3/log2 3)
    assert bench.ndcg([2, 3], [3, 2]) == pytest.approx(0.83399, abs=1e-5)


def test_ndcg_ideal_counts_judged_pages_the_index_never_returned():
    # One perfect page of two found at rank 1: 7 / (7 + 7/log2 3).
    assert bench.ndcg([3, 0, 0], [3, 3]) == pytest.approx(0.61315, abs=1e-5)
    # The only perfect page found at rank 2.
    assert bench.ndcg([0, 3], [3]) == pytest.approx(1 / LOG2_3)


def test_ndcg_stops_at_rank_ten():
    assert bench.ndcg([0] * 10 + [3], [3]) == 0.0
    assert bench.ndcg([0] * 9 + [3], [3]) == pytest.approx(1 / math.log2(11))


def test_ndcg_of_a_query_with_nothing_judged_is_zero_not_a_division_error():
    assert bench.ndcg([0, 0], []) == 0.0


def test_reciprocal_rank_counts_the_first_result_graded_two_or_more():
    assert bench.reciprocal_rank([0, 1, 2, 3]) == pytest.approx(1 / 3)
    assert bench.reciprocal_rank([3]) == 1.0
    assert bench.reciprocal_rank([1, 1, 1]) == 0.0
    assert bench.reciprocal_rank([]) == 0.0
    assert bench.reciprocal_rank([0] * 10 + [3]) == 0.0


def test_means_per_language_average_the_queries_of_that_language():
    judged = {"a/x.html": 3}
    hit = bench.Scored(bench.Query("x", "en", judged), ("a/x.html",), 0.001)
    second = bench.Scored(bench.Query("x", "zh", judged), ("a/y.html", "a/x.html"), 0.001)
    miss = bench.Scored(bench.Query("x", "zh", judged), (), 0.001)
    result = bench.report([], [hit, second, miss], 0.0)["means"]
    assert result["en"] == {"queries": 1, "ndcg@10": 1.0, "mrr": 1.0}
    assert result["zh"] == {"queries": 2, "ndcg@10": round(1 / LOG2_3 / 2, 4), "mrr": 0.25}
    assert result["all"]["mrr"] == round(1.5 / 3, 4)
    assert result["mixed"] == {"queries": 0, "ndcg@10": None, "mrr": None}


def test_result_urls_map_back_to_judged_page_ids():
    url = bench.page_url("kitchen", "recipes/tomato-egg.html")
    assert url == "http://kitchen.bench.ladder/recipes/tomato-egg.html"
    assert bench.page_id(url) == "kitchen/recipes/tomato-egg.html"
    # Anything else is kept as it came, so that it grades 0 and shows in the report as what it was.
    for foreign in ("http://kitchen.bench.ladder/a.html?print=1", "http://blog.alice.ladder/a.html"):
        assert bench.page_id(foreign) == foreign


def test_the_judged_set_is_as_large_as_the_issue_asks_and_every_judgement_names_a_page():
    sites = bench.load_sites(bench.CORPUS)
    pages = {f"{site.name}/{path}" for site in sites for path in site.pages}
    queries = bench.load_queries(bench.CORPUS, pages)
    assert len(sites) >= 7
    assert len(pages) >= 60
    assert len(queries) >= 30
    languages = [query.lang for query in queries]
    assert languages.count("en") >= 10 and languages.count("zh") >= 10
    assert len({query.text for query in queries}) == len(queries)


def write_query(folder: Path, judged: str) -> None:
    (folder / "queries.toml").write_text(f'[[queries]]\ntext = "x"\nlang = "en"\njudged = {{ {judged} }}\n')


def test_a_judgement_of_a_page_not_in_the_corpus_is_refused(tmp_path):
    write_query(tmp_path, '"a/gone.html" = 3')
    with pytest.raises(bench.CorpusError, match="not a page of the corpus"):
        bench.load_queries(tmp_path, {"a/here.html"})


def test_a_query_without_a_relevant_page_is_refused(tmp_path):
    write_query(tmp_path, '"a/here.html" = 1')
    with pytest.raises(bench.CorpusError, match="no page graded 2"):
        bench.load_queries(tmp_path, {"a/here.html"})


def test_a_grade_outside_zero_to_three_is_refused(tmp_path):
    write_query(tmp_path, '"a/here.html" = 5')
    with pytest.raises(bench.CorpusError, match="is not 0-3"):
        bench.load_queries(tmp_path, {"a/here.html"})

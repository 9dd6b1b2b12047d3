#!/usr/bin/env python3
"""How well the search index ranks: nDCG@10 and MRR over the judged set in search_corpus/.

    python3 benchmarks/search_relevance.py [--table] [--corpus DIR]

The judged set is a folder of published services as a hub's crawler would find them
(search_corpus/<service>/, one service.toml with what `ladder publish` would sign, and the
site's HTML pages) and queries.toml, the queries with graded judgements made by reading the
pages: 3 perfect, 2 relevant, 1 marginal, unlisted 0.

The script indexes every page the way the hub does — `put_service` with the signed record,
then `extract` from text.py and `put_page` for each page, at http://<service>.bench.ladder/<path>
— into a fresh index in a temporary folder, runs every query for its first ten results and
scores the ranking:

* nDCG@10: graded gain 2^g - 1, discounted by log2(rank + 1), divided by the same sum for the
  ideal ranking of all the query's judged pages (found or not, so missing a good page costs);
* MRR: the mean over queries of 1/rank of the first result graded 2 or more (0 if none in ten).

The means are reported over all queries and per query language (en, zh, and mixed: Chinese
with a Latin-script term), since the two scripts take different roads through the index
(word tokens against segmented Chinese). One JSON object goes to stdout; with --table a short
table goes to stderr as well. The metric functions import nothing of Ladder, so their test
(tests/search/test_relevance_metrics.py) runs without an index; the index and the extractor
are imported only when the benchmark runs. Bounded by the corpus: a few dozen pages and
queries, a second or two.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "search_corpus"
DEPTH = 10  # nDCG@10, and the results asked of the index per query
RELEVANT = 2  # the reciprocal rank counts the first result of at least this grade
GRADES = range(4)
LANGS = ("en", "zh", "mixed")
HOST_SUFFIX = ".bench.ladder"
HUB = "bench"
PAGE_BYTES = 1 << 20  # a corpus page larger than this is a mistake, not a page


class CorpusError(Exception):
    """The judged set is malformed: a missing file, a bad grade, a judgement of no page."""


def gain(grade: int) -> float:
    return 2.0**grade - 1.0


def dcg(grades: Sequence[int]) -> float:
    """Discounted cumulative gain of grades in rank order (rank 1 first)."""
    return sum(gain(grade) / math.log2(rank + 1) for rank, grade in enumerate(grades, start=1))


def ndcg(ranked: Sequence[int], judged: Iterable[int], depth: int = DEPTH) -> float:
    """nDCG@depth of the grades of the results in rank order, against the ideal order of all judged grades."""
    ideal = dcg(sorted(judged, reverse=True)[:depth])
    return dcg(ranked[:depth]) / ideal if ideal > 0 else 0.0


def reciprocal_rank(ranked: Sequence[int], threshold: int = RELEVANT, depth: int = DEPTH) -> float:
    """1/rank of the first result graded `threshold` or more within `depth`; 0.0 if there is none."""
    for rank, grade in enumerate(ranked[:depth], start=1):
        if grade >= threshold:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True)
class Query:
    text: str
    lang: str
    judged: dict[str, int]  # page id ("<service>/<path>") -> grade; unlisted pages are 0


@dataclass(frozen=True)
class Site:
    name: str
    title: str
    description: str
    keywords: tuple[str, ...]
    lang: str
    pages: tuple[str, ...]  # paths inside the site, "/" separated, sorted

    @property
    def host(self) -> str:
        return self.name + HOST_SUFFIX


@dataclass(frozen=True)
class Scored:
    query: Query
    results: tuple[str, ...]  # the page ids (or foreign URLs) the index returned, best first
    seconds: float

    @property
    def grades(self) -> list[int]:
        return [self.query.judged.get(result, 0) for result in self.results]

    @property
    def ndcg(self) -> float:
        return ndcg(self.grades, self.query.judged.values())

    @property
    def reciprocal_rank(self) -> float:
        return reciprocal_rank(self.grades)


def page_url(site: str, path: str) -> str:
    """Where the crawler finds a page: a site's index.html at its root, as a web server serves it."""
    return f"http://{site}{HOST_SUFFIX}/{'' if path == 'index.html' else path}"


def page_id(url: str) -> str:
    """The judged-set id of a result URL: "<service>/<path>"; a URL outside the set is returned as it is."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host.endswith(HOST_SUFFIX) or parts.query:
        return url
    return host.removesuffix(HOST_SUFFIX) + ("/index.html" if parts.path == "/" else parts.path)


def load_sites(corpus: Path) -> list[Site]:
    sites = []
    for record in sorted(corpus.glob("*/service.toml")):
        folder = record.parent
        try:
            signed = tomllib.loads(record.read_text(encoding="utf-8"))
            site = Site(name=signed["name"], title=signed["title"], description=signed["description"],
                        keywords=tuple(signed["keywords"]), lang=signed["lang"],
                        pages=tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.html"))))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
            raise CorpusError(f"{record}: {e!r}") from e
        if site.name != folder.name:
            raise CorpusError(f"{record}: name {site.name!r} is not the folder's name {folder.name!r}")
        sites.append(site)
    if not sites:
        raise CorpusError(f"{corpus}: no <service>/service.toml")
    return sites


def load_queries(corpus: Path, pages: set[str]) -> list[Query]:
    """The judged queries; every judgement must name a page of the corpus with a grade 0-3."""
    path = corpus / "queries.toml"
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8"))["queries"]
        queries = [Query(text=e["text"], lang=e["lang"], judged=dict(e["judged"])) for e in entries]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise CorpusError(f"{path}: {e!r}") from e
    for query in queries:
        if query.lang not in LANGS:
            raise CorpusError(f"{path}: {query.text!r}: lang {query.lang!r} is not one of {LANGS}")
        for page, grade in query.judged.items():
            if page not in pages:
                raise CorpusError(f"{path}: {query.text!r} judges {page!r}, not a page of the corpus")
            if grade not in GRADES:
                raise CorpusError(f"{path}: {query.text!r}: grade {grade!r} of {page!r} is not 0-3")
        # Without a relevant page the reciprocal rank could never be above 0: a judging slip.
        if max(query.judged.values(), default=0) < RELEVANT:
            raise CorpusError(f"{path}: {query.text!r} has no page graded {RELEVANT} or more")
    return queries


def run(corpus: Path) -> dict:
    # Imported here, not at the top, so that the metrics above can be tested without an index.
    from ladder.search.index import SearchIndex, Service
    from ladder.search.text import extract

    sites = load_sites(corpus)
    queries = load_queries(corpus, {f"{site.name}/{path}" for site in sites for path in site.pages})
    with tempfile.TemporaryDirectory(prefix="ladder-relevance-") as folder:
        index = SearchIndex(Path(folder) / "search.db")
        try:
            started = time.perf_counter()
            for site in sites:
                key = f"publisher-of-{site.name}/{site.name}"
                index.put_service(Service(key=key, host=site.host, hub=HUB, title=site.title,
                                          description=site.description, keywords=site.keywords,
                                          lang=site.lang, seq=1))
                for path in site.pages:
                    body = (corpus / site.name / path).read_bytes()
                    if len(body) > PAGE_BYTES:
                        raise CorpusError(f"{site.name}/{path}: {len(body)} bytes, more than {PAGE_BYTES}")
                    page = extract(body, page_url(site.name, path), "text/html; charset=utf-8")
                    index.put_page(key, page.url, page.title, page.headings, page.body, page.lang,
                                   time.time())
            indexing = time.perf_counter() - started
            scored = []
            for query in queries:
                started = time.perf_counter()
                results = index.search(query.text, limit=DEPTH)
                seconds = time.perf_counter() - started
                scored.append(Scored(query, tuple(page_id(result.url) for result in results), seconds))
        finally:
            index.close()
    return report(sites, scored, indexing)


def means(scored: Sequence[Scored]) -> dict:
    count = len(scored)
    return {"queries": count,
            "ndcg@10": round(sum(s.ndcg for s in scored) / count, 4) if count else None,
            "mrr": round(sum(s.reciprocal_rank for s in scored) / count, 4) if count else None}


def report(sites: Sequence[Site], scored: Sequence[Scored], indexing: float) -> dict:
    seconds = [s.seconds for s in scored]
    return {
        "corpus": {"services": len(sites), "pages": sum(len(site.pages) for site in sites),
                   "queries": len(scored)},
        "index_s": round(indexing, 3),
        "query_ms": {"mean": round(sum(seconds) / len(seconds) * 1e3, 2) if seconds else None,
                     "max": round(max(seconds, default=0.0) * 1e3, 2)},
        "means": {"all": means(scored)} | {lang: means([s for s in scored if s.query.lang == lang])
                                           for lang in LANGS},
        "queries": [{"text": s.query.text, "lang": s.query.lang, "ndcg@10": round(s.ndcg, 4),
                     "rr": round(s.reciprocal_rank, 4),
                     "results": [[result, grade] for result, grade in zip(s.results, s.grades, strict=True)]}
                    for s in scored],
    }


def table(result: dict) -> str:
    lines = [f"{'nDCG@10':>8} {'RR':>6}  lang   query"]
    lines += [f"{q['ndcg@10']:8.3f} {q['rr']:6.3f}  {q['lang']:<6} {q['text']}" for q in result["queries"]]
    lines.append("")
    lines.append(f"{'':8} {'':6}  {'set':<6} queries  nDCG@10  MRR")
    for lang, m in result["means"].items():
        if m["queries"]:
            lines.append(f"{'':8} {'':6}  {lang:<6} {m['queries']:>7}  {m['ndcg@10']:7.3f}  {m['mrr']:.3f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="also print a table of the figures to stderr")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the judged set's folder")
    args = parser.parse_args()
    try:
        result = run(args.corpus)
    except CorpusError as e:
        print(f"search_relevance: the judged set is malformed: {e}", file=sys.stderr)
        return 2
    if args.table:
        print(table(result), file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Chinese cut into words for the index, and the words of a query."""

from ladder.search.segment import SEPARATOR, query_words, segment, subwords, unsegment


def test_han_runs_are_cut_into_words_and_read_as_written_once_the_separators_go():
    text = "我们的搜索引擎 finds pages"
    cut = segment(text)
    assert cut.split(SEPARATOR)[1:4] == ["我们", "的", "搜索引擎"]
    assert unsegment(cut) == text
    assert segment("no Chinese here") == "no Chinese here"


def test_the_shorter_words_inside_a_long_one_are_its_subwords():
    assert set(subwords("我们的搜索引擎").split()) >= {"搜索", "引擎"}
    assert subwords("plain text") == ""


def test_query_words_are_lower_case_and_cut_as_the_index_cuts():
    assert query_words("Film PHOTOS film") == ["film", "photos"]
    assert query_words("搜索引擎") == ["搜索引擎"]
    assert query_words("ladder搜索") == ["ladder", "搜索"]
    assert query_words('" AND * NEAR(') == ["and", "near"]
    assert query_words("  ") == []
    assert len(query_words(" ".join(f"w{i}" for i in range(100)))) == 32

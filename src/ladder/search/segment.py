"""Chinese (and any Han text) cut into words, for an index that otherwise splits on spaces.

FTS5's unicode61 tokenizer takes a run of Han characters, which Chinese
writes without spaces, as one token: "我们的搜索引擎" would be one word, and
a search for 搜索 would find nothing. rjieba (jieba's dictionary and model)
cuts such runs into words. `segment` puts SEPARATOR, a zero-width space the
index's tokenizer splits on, between the words, so the text still reads as
written in a snippet once the separators are taken out (`unsegment`).

jieba cuts 搜索引擎 as one word. `subwords` gives the shorter words inside the
words it cut (搜索, 索引, 引擎), which the index keeps in columns of their own,
so a two-character query word finds the longer word that holds it.
`query_words` is what a query looks for: its words, Han runs cut the same way.
"""

from __future__ import annotations

import re
from types import ModuleType

SEPARATOR = "\u200b"
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]+")
_WORD = re.compile(r"\w+")
QUERY_WORDS_MAX = 32


def _jieba() -> ModuleType:
    """rjieba, imported at the first Han text: its dictionary costs a process ~32 MB and ~130 ms,
    and a hub whose members publish no Chinese pages (or none at all) never needs it."""
    import rjieba

    return rjieba


def segment(text: str) -> str:
    """`text` with its Han runs cut into words, SEPARATOR around and between them."""
    return _HAN.sub(lambda run: SEPARATOR + SEPARATOR.join(_jieba().cut(run.group())) + SEPARATOR, text)


def is_han(word: str) -> bool:
    return bool(_HAN.fullmatch(word))


def unsegment(text: str) -> str:
    return text.replace(SEPARATOR, "")


def subwords(text: str) -> str:
    """The shorter words inside the Han words of `text` that `segment` cut whole, space-separated."""
    out: list[str] = []
    for run in _HAN.findall(text):
        jieba = _jieba()
        whole = set(jieba.cut(run))
        out.extend(w for w in jieba.cut_for_search(run) if w not in whole and len(w) > 1)
    return " ".join(out)


def query_words(query: str) -> list[str]:
    """The words of a query (lower case; Han runs cut as the index cut them), at most QUERY_WORDS_MAX."""
    words: list[str] = []
    for token in _WORD.findall(query):
        for part in _HAN.split(token):  # letters and digits around a Han run, then the run's words
            if part:
                words.append(part.lower())
        words.extend(w for run in _HAN.findall(token) for w in _jieba().cut(run) if w.strip())
    seen: dict[str, None] = dict.fromkeys(words)
    return list(seen)[:QUERY_WORDS_MAX]

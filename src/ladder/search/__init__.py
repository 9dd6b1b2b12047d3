"""Search: what exists only inside the network, found by words.

text.py turns a fetched page into text and links, robots.py reads robots.txt,
crawl.py fetches one service's pages within bounds over any connection it is
given, segment.py cuts Chinese into words, index.py keeps the full-text index
(SQLite FTS5) and ranks, page.py is the search page and its JSON API. The
hub's crawler (hub/search.py) is the adapter: a member of its own that
reaches services through channels.
"""

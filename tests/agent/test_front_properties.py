"""The proxy front on arbitrary bytes that start like SOCKS5, SOCKS4 or HTTP, cut anywhere.

Driven by the front's fuzz target (fuzz/targets.py), which feeds a
ProxyConnection over an in-memory transport: no exception may escape the
front, it never writes after closing, and what it sends on a stream is for
that stream's target (a pipelined request for another host once went to
the first one's). With or without a password, refusing or opening, streams
attached at once or later.
"""

from __future__ import annotations

from fuzztargets import targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

starts = st.sampled_from([b"\x05\x01\x00", b"\x05\x01\x02\x01\x04user\x06secret",
                          b"\x05\x02\x00\x02\x05\x01\x00", b"\x04\x01\x00\x50", b"GET http://", b"CONNECT ",
                          b"POST http://a.example/ HTTP/1.1\r\n", b"GET /proxy.pac HTTP/1.1\r\n"])
heads = st.lists(st.sampled_from([b"GET", b"POST", b"HEAD"]).flatmap(lambda method: st.builds(
    lambda host, port, fields: method + b" http://%s:%d/ HTTP/1.1\r\n%s\r\n" % (host, port, fields),
    st.sampled_from([b"a.example", b"b.example", b"127.0.0.1", b"[::1]"]), st.integers(1, 65535),
    st.sampled_from([b"", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n",
                     b"Connection: close\r\n"]))),
    min_size=1, max_size=4)
fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(st.integers(0, 7), st.integers(0, 255), starts, st.binary(max_size=200))
def test_arbitrary_requests_never_raise_out_of_the_front(flags, cut, start, rest):
    targets.front(bytes([flags]) + bytes([cut]) + start + rest)


@fast
@given(st.integers(0, 7), st.integers(0, 255), heads, st.binary(max_size=20))
def test_pipelined_requests_reach_only_their_own_host(flags, cut, requests, body):
    targets.front(bytes([flags & ~2]) + bytes([cut]) + b"".join(requests) + body)

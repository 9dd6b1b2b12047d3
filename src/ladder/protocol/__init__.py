"""Protocol core, sans-IO: frames, mux, hellos, identities, payloads, control messages, envelopes, Noise.

Bytes in, events out; no sockets, no asyncio, and no imports from the rest
of Ladder but `ladder.errors`, the root its errors descend from (which
imports nothing). Everything here is tested by feeding bytes.
"""

"""Protocol core, sans-IO: frames, the mux, hellos, payloads and Noise.

Bytes in, events out; no sockets, no asyncio, and no imports from the rest
of Ladder. Everything here is tested by feeding bytes.
"""

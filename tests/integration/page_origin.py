"""A web server for the browser tests: one page of many images on many host names (a separate process).

Run as: python page_origin.py PORT ADDRESS...   (it listens on PORT at every ADDRESS)

`/page?hosts=h1,h2,...&images=N&run=R` is a page with N images spread over
the hosts, at /img/R/<i>.gif; each image's onload or onerror counts, and once all are in, the
page writes `<p id="result">loaded=L failed=F ms=T</p>`. An image is
answered after IMAGE_DELAY, so a browser holds many connections open at
once. Every request served is logged on stdout as `served HOST PATH`.
"""

import asyncio
import sys
import urllib.parse

IMAGE_DELAY = 0.3
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
PAGE = """<!doctype html><html><head><title>many hosts</title></head><body>
<p id="result">loading</p><div id="images"></div>
<script>
var hosts = %s, total = %d, run = %s, loaded = 0, failed = 0, started = Date.now();
function done() {
  if (loaded + failed == total)
    document.getElementById("result").textContent =
      "loaded=" + loaded + " failed=" + failed + " ms=" + (Date.now() - started);
}
for (var i = 0; i < total; i++) {
  var img = document.createElement("img");
  img.onload = function () { loaded++; done(); };
  img.onerror = function () { failed++; done(); };
  img.src = "http://" + hosts[i %% hosts.length] + "/img/" + run + "/" + i + ".gif";
  document.getElementById("images").appendChild(img);
}
</script></body></html>
"""


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *fields = head.decode("latin-1").split("\r\n")
            path = request_line.split(" ")[1]
            host = next((f.split(":", 1)[1].strip() for f in fields if f.lower().startswith("host:")), "")
            print("served", host, path, flush=True)
            url = urllib.parse.urlsplit(path)
            if url.path == "/page":
                query = urllib.parse.parse_qs(url.query)
                hosts = query["hosts"][0].split(",")
                body = (PAGE % (repr(hosts), int(query["images"][0]), repr(query["run"][0]))).encode()
                kind = "text/html"
            elif url.path.startswith("/img/"):
                await asyncio.sleep(IMAGE_DELAY)
                body, kind = GIF, "image/gif"
            else:
                body, kind = b"not found\n", "text/plain"
            status = "404 Not Found" if kind == "text/plain" else "200 OK"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                         f"Cache-Control: no-store\r\n\r\n".encode() + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, IndexError, KeyError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int, addresses: list[str]) -> None:
    server = await asyncio.start_server(serve, addresses, port, backlog=1024)
    print("listening", port, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))

"""Compaction's stall on `courier streams --storage log:DIR`.

Usage: python3 benches/streams/compaction.py PORT LIVE_MIB CHURN_MIB, against a server started
with `COURIER_LOG=info courier streams --storage log:DIR --addr 127.0.0.1:PORT` (loopback only).
Appends LIVE_MIB records of 1 MiB to one stream, then creates, appends 1 MiB to and deletes
CHURN_MIB streams one after another, and prints the median and slowest of those three calls.
The server's log says when the journal was compacted and how long it took; calls that need a
sync wait for it.
"""
import http.client, sys, time
port, live_mib, churn = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
def req(method, path, body=None):
    c.request(method, path, body=body, headers={"content-type": "application/octet-stream"})
    r = c.getresponse(); r.read(); return r.status
mib = b"x" * (1 << 20)
assert req("PUT", "/v1/stream/live") in (200, 201)
for _ in range(live_mib):
    assert req("POST", "/v1/stream/live", mib) in (200, 204)
lat = []
t0 = time.time()
for k in range(churn):
    s = time.time(); assert req("PUT", f"/v1/stream/dead-{k}", None) in (200, 201)
    assert req("POST", f"/v1/stream/dead-{k}", mib) in (200, 204)
    assert req("DELETE", f"/v1/stream/dead-{k}") in (200, 204)
    lat.append(time.time() - s)
lat.sort()
print(f"live {live_mib} MiB, churned {churn} MiB in {time.time()-t0:.1f} s; per create+append+delete p50 {lat[len(lat)//2]*1e3:.1f} ms, max {lat[-1]*1e3:.0f} ms")

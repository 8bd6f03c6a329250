"""The official Durable Streams Python client (durable-streams) against
rill's /v1/stream/{name}: create and append, catch-up reads from the
offsets rill returns, live tails (long-poll and SSE), and reads that
survive a cut connection (a TCP proxy in between destroys its sockets
mid-stream) without losing or repeating a message."""

import os
import queue
import socket
import threading
import time
import unittest
from urllib.parse import urlsplit

import httpx
from durable_streams import DurableStream, stream

from support import PATIENCE, Rill

LONG_POLL_SECS = 10  # far above how fast a live reader must see an append

rill = None


def setUpModule():
    global rill
    rill = Rill("--long-poll-secs", str(LONG_POLL_SECS))


def tearDownModule():
    rill.stop()


_serial = [0]


def fresh_name(tag):
    """A stream name no other test uses."""
    _serial[0] += 1
    return "py-%s-%d-%d-%d" % (tag, os.getpid(), int(time.time() * 1000), _serial[0])


def url_of(base, name):
    return "%s/v1/stream/%s" % (base, name)


def until(check, what):
    """Waits until check() is true; fails after PATIENCE seconds."""
    end = time.monotonic() + PATIENCE
    while not check():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of `base`. cut_mid_response() arms
    it: the next bytes rill sends through it are passed on only in part, and
    then every open connection is destroyed, both sides. `cuts` holds how
    many connections each cut destroyed."""

    def __init__(self, base):
        target = urlsplit(base)
        self.target = (target.hostname, target.port)
        self.pairs = set()
        self.lock = threading.Lock()
        self.armed = False
        self.cuts = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.base = "http://127.0.0.1:%d" % self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=PATIENCE)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self.lock:
                self.pairs.add(pair)
            threading.Thread(target=self._pump, args=(client, upstream, pair, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, pair, True), daemon=True).start()

    def _pump(self, src, dst, pair, from_rill):
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                with self.lock:
                    cut, self.armed = from_rill and self.armed, self.armed and not from_rill
                if cut:
                    dst.sendall(chunk[: len(chunk) // 2])
                    self.cuts.append(self._cut_all())
                    return
                dst.sendall(chunk)
        except OSError:
            pass
        self._drop(pair)

    def _drop(self, pair):
        with self.lock:
            self.pairs.discard(pair)
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _cut_all(self):
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            self._drop(pair)
        return len(pairs)

    def cut_mid_response(self):
        with self.lock:
            self.armed = True

    def stop(self):
        self.server.close()
        self._cut_all()


def recording_client():
    """An httpx client that records the URL of every request it sends."""
    urls = []
    client = httpx.Client(
        timeout=PATIENCE, event_hooks={"request": [lambda request: urls.append(request.url)]}
    )
    return client, urls


class WriteAndRead(unittest.TestCase):
    def test_append_then_read_all_and_resume_from_the_returned_offsets(self):
        url = url_of(rill.base, fresh_name("text"))
        with DurableStream.create(url, content_type="text/plain") as handle:
            first = handle.append("hello, ")
            second = handle.append("world")
            self.assertLess(first.next_offset, second.next_offset, "offsets sort in stream order")

            with stream(url, live=False) as res:
                self.assertEqual(res.read_text(), "hello, world")
                self.assertTrue(res.up_to_date)
                self.assertEqual(res.offset, second.next_offset)
            self.assertEqual(handle.head().offset, second.next_offset)

            # From the offset an append returned: what came after it.
            with stream(url, offset=first.next_offset, live=False) as res:
                self.assertEqual(res.read_text(), "world")

            third = handle.append("!\nline two\n")
            with stream(url, offset=second.next_offset, live=False) as res:
                self.assertEqual(res.read_text(), "!\nline two\n")
                self.assertEqual(res.offset, third.next_offset)
            with stream(url, offset=third.next_offset, live=False) as res:
                self.assertEqual(res.read_text(), "")
                self.assertEqual(res.offset, third.next_offset)
            with stream(url, offset="-1", live=False) as res:
                self.assertEqual(res.read_text(), "hello, world!\nline two\n")

    def test_bytes_come_back_exactly(self):
        url = url_of(rill.base, fresh_name("bytes"))
        parts = [b"\x00\xff\xfe\r\n", "\r\nü\r".encode()]
        with DurableStream.create(url, content_type="application/octet-stream") as handle:
            for p in parts:
                handle.append(p)
            with stream(url, live=False) as res:
                self.assertEqual(res.read_bytes(), b"".join(parts))

    def test_json_messages_are_the_values_appended(self):
        url = url_of(rill.base, fresh_name("json"))
        values = [{"a": 1, "b": [1, 2]}, [1, 2, 3], "text with\nnewline", 42, None, {"crlf": "x\r\ny"}]
        with DurableStream.create(url, content_type="application/json") as handle:
            marks = [handle.append(v).next_offset for v in values]
            with stream(url, live=False) as res:
                self.assertEqual(res.read_json(), values)
            with stream(url, offset=marks[2], live=False) as res:
                self.assertEqual(res.read_json(), values[3:])


class LiveTail(unittest.TestCase):
    def tail(self, live):
        url = url_of(rill.base, fresh_name("tail-" + live.replace("-", "")))
        handle = DurableStream.create(url, content_type="application/json")
        self.addCleanup(handle.close)
        handle.append({"n": 0})
        client, urls = recording_client()
        self.addCleanup(client.close)
        got = queue.Queue()

        def read():
            try:
                # The protocol requires an offset on live reads; this client
                # leaves it out unless given one.
                with stream(url, offset="-1", live=live, client=client) as res:
                    for event in res.iter_events(mode="json"):
                        for item in event.data:
                            got.put((time.monotonic(), item))
                            if item == "stop":
                                return
            except Exception as e:  # noqa: BLE001 - handed to the test thread
                got.put((time.monotonic(), e))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        self.assertEqual(got.get(timeout=PATIENCE)[1], {"n": 0})
        # The reader is waiting on a live request when the next append lands.
        until(lambda: any(u.params.get("live") == live for u in urls), "a %s request" % live)
        time.sleep(0.2)
        for n in (1, 2, 3):
            sent = time.monotonic()
            handle.append({"n": n})
            at, item = got.get(timeout=PATIENCE)
            self.assertEqual(item, {"n": n})
            self.assertLess(at - sent, LONG_POLL_SECS / 2, "woken by the append, not by a timeout")
        handle.append("stop")
        self.assertEqual(got.get(timeout=PATIENCE)[1], "stop")
        reader.join(PATIENCE)
        self.assertFalse(reader.is_alive())
        modes = {u.params.get("live") for u in urls}
        self.assertIn(live, modes)
        self.assertNotIn("sse" if live == "long-poll" else "long-poll", modes)

    def test_long_poll_sees_appends_made_after_it_started(self):
        self.tail("long-poll")

    def test_sse_sees_appends_made_after_it_started(self):
        self.tail("sse")


class CutConnection(unittest.TestCase):
    """A reader that keeps the offset of the last event it handled and, when
    a read fails, starts a new one from there gets every message once."""

    TOTAL = 60

    def cut_mid_stream(self, live):
        proxy = Proxy(rill.base)
        self.addCleanup(proxy.stop)
        name = fresh_name("cut-" + live.replace("-", ""))
        writer = DurableStream.create(url_of(rill.base, name), content_type="application/json")
        self.addCleanup(writer.close)
        for n in range(10):
            writer.append({"n": n})

        items, errors, reads = [], [], [0]
        finished = threading.Event()

        def read():
            saved = "-1"
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline and reads[0] < 20:
                reads[0] += 1
                try:
                    with stream(url_of(proxy.base, name), offset=saved, live=live, timeout=PATIENCE) as res:
                        for event in res.iter_events(mode="json"):
                            items.extend(event.data)
                            saved = event.next_offset
                            if items and items[-1] == {"n": self.TOTAL - 1}:
                                return
                except (httpx.HTTPError, OSError) as e:
                    errors.append(e)
            errors.append(AssertionError("the reader gave up after %d reads" % reads[0]))

        def run():
            try:
                read()
            finally:
                finished.set()

        reader = threading.Thread(target=run, daemon=True)
        reader.start()
        for n in range(10, self.TOTAL):
            writer.append({"n": n})
            if n in (25, 45):
                # Mid-stream: the reader is behind the writer by a few
                # messages at most, and the next answer rill sends it is
                # cut in half.
                until(lambda: len(items) >= n - 5, "the reader to reach %d" % (n - 5))
                cuts = len(proxy.cuts)
                proxy.cut_mid_response()
                until(lambda: len(proxy.cuts) > cuts, "the cut")
            time.sleep(0.01)
        self.assertTrue(finished.wait(PATIENCE), "the reader finished")
        self.assertEqual(len(proxy.cuts), 2)
        self.assertTrue(all(c > 0 for c in proxy.cuts), "connections cut: %s" % proxy.cuts)
        self.assertEqual(items, [{"n": n} for n in range(self.TOTAL)])
        self.assertFalse([e for e in errors if isinstance(e, AssertionError)], errors)
        self.assertEqual(reads[0], 3, "each cut ended a read: %s" % errors)

    def test_long_poll_resumes_from_its_offset(self):
        self.cut_mid_stream("long-poll")

    def test_sse_resumes_from_its_offset(self):
        self.cut_mid_stream("sse")


if __name__ == "__main__":
    unittest.main()

"""A stand-in OpenTelemetry collector for `bench/run`'s observed target: answers every
OTLP/HTTP export (`POST /v1/traces`) with 200 after reading it whole, so the gateway's
exporter does its real work (batching, protobuf encoding, HTTP) and nothing is kept.
Prints what it received when stopped (SIGTERM/SIGINT).

python -m bench.driver.otlp_sink --port 4318
"""

from __future__ import annotations

import argparse
import http.server
import signal
import sys
from types import FrameType
from typing import Any


class Sink(http.server.ThreadingHTTPServer):
    daemon_threads = True
    exports = 0
    received_bytes = 0


class ExportHandler(http.server.BaseHTTPRequestHandler):
    server: Sink

    def do_GET(self) -> None:  # readiness probe of bench/driver/procs.wait_ready
        self._answer(200)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.exports += 1
        self.server.received_bytes += len(body)
        self._answer(200 if self.path == "/v1/traces" else 404)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one summary line at the end."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otlp_sink")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    sink = Sink(("127.0.0.1", args.port), ExportHandler)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        sink.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        print(f"otlp sink: {sink.exports} exports, {sink.received_bytes:,} bytes", flush=True)
        sink.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""moto server for golos's AWS contract tests, one request at a time.

`moto_server` serves requests on threads, and moto's in-memory backends are not atomic
across threads: two concurrent TransactWriteItems can both pass their conditions. Real
DynamoDB and SQS are atomic, and our concurrency tests check *our* use of them, so we serve
moto single-threaded to give it the service's atomicity.

usage: python3 moto_server.py [--host 127.0.0.1] [--port 5000]
"""

import argparse
import os
import threading
import time

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="exit when the process that started us is gone (test harnesses)")
    args = parser.parse_args()
    if args.exit_with_parent:
        threading.Thread(target=exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, app, threaded=False, use_reloader=False)


if __name__ == "__main__":
    main()

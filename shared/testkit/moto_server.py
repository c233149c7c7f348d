"""moto server for golos's AWS contract tests, one request at a time.

`moto_server` serves requests on threads, and moto's in-memory backends are not atomic
across threads: two concurrent TransactWriteItems can both pass their conditions. Real
DynamoDB and SQS are atomic, and our concurrency tests check *our* use of them, so we serve
moto single-threaded to give it the service's atomicity.

usage: python3 moto_server.py [--host 127.0.0.1] [--port 5000]
"""

import argparse
import os

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, app, threaded=False, use_reloader=False)


if __name__ == "__main__":
    main()

"""moto's server, with DynamoDB requests served one at a time.

`moto_server` serves requests on threads, and its TransactWriteItems is then not atomic across
concurrent requests (two transactions can both pass `attribute_not_exists` for one item), which
real DynamoDB guarantees and the store contract checks. A lock around DynamoDB requests restores
that guarantee. Other services stay concurrent: an SQS long poll (a receive that waits for
messages) must not hold up everyone else.
"""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

DYNAMODB = threading.Lock()


class OneDynamoDbRequestAtATime:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with DYNAMODB:
                # Read the whole response inside the lock: the work happens while iterating.
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    app = OneDynamoDbRequestAtATime(DomainDispatcherApplication(create_backend_app))
    run_simple(host, port, app, threaded=True, use_reloader=False)

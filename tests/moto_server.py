"""moto's server, one request at a time.

`moto_server` serves requests on threads, and its TransactWriteItems is then not atomic across
concurrent requests (two transactions can both pass `attribute_not_exists` for one item), which
real DynamoDB guarantees and the store contract checks. Serving requests one by one restores
that guarantee; clients still run concurrently.
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False, use_reloader=False)

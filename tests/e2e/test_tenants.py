"""Tenants apart (issue 8): organizations made with `tally organizations create` while the
server runs, their keys created, listed and revoked with `tally api-keys`, and an adversarial
isolation suite: organization B's key on organization A's objects answers 404 on every route and
changes nothing; lists and usage never mix them. Runs on both backends (tests/run)."""

import httpx
import pytest

from conftest import API_KEY, eventually


def make_org(server, name: str):
    out = server.cli(["organizations", "create", name]).splitlines()
    assert out[0].startswith("organization: ") and out[1].startswith("API key: "), out
    return out[0].removeprefix("organization: "), out[1].removeprefix("API key: ")


def call(server, method: str, path: str, key: str, body=None, **params) -> httpx.Response:
    return httpx.request(method, f"{server.url}/api/v1/{path}", params=params, json=body,
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)


def seed(server, key: str, prefix: str, events: int):
    """The same catalog and ids in any organization; `prefix` adds objects only it has."""
    for path, body in [
        ("taxes", {"tax": {"name": "VAT", "code": f"{prefix}vat", "rate": 10}}),
        ("billable_metrics", {"billable_metric": {"name": "Calls", "code": f"{prefix}calls", "aggregation_type": "count_agg"}}),
        ("plans", {"plan": {"name": "Plan", "code": f"{prefix}plan", "interval": "monthly", "amount_cents": 1000,
                            "amount_currency": "EUR", "charges": [{"billable_metric_code": f"{prefix}calls",
                            "charge_model": "standard", "properties": {"amount": "1"}}]}}),
        ("customers", {"customer": {"external_id": f"{prefix}cust", "name": f"{prefix} customer"}}),
        ("subscriptions", {"subscription": {"external_customer_id": f"{prefix}cust", "plan_code": f"{prefix}plan",
                                            "external_id": f"{prefix}sub"}}),
    ]:
        answer = call(server, "POST", path, key, body)
        assert answer.status_code == 200, (path, answer.text)
    batch = [{"transaction_id": f"{prefix}tx-{i}", "external_subscription_id": f"{prefix}sub", "code": f"{prefix}calls"}
             for i in range(events)]
    assert call(server, "POST", "events/batch", key, {"events": batch}).status_code == 200


def usage_of(server, key: str, prefix: str) -> dict:
    answer = call(server, "GET", f"customers/{prefix}cust/current_usage", key, external_subscription_id=f"{prefix}sub")
    assert answer.status_code == 200, answer.text
    return answer.json()["customer_usage"]


@pytest.fixture(scope="module")
def tenants(server):
    b_id, b_key = make_org(server, "Beta")
    # Same codes and external ids in both: 3 events in A, 5 in B.
    seed(server, API_KEY, "iso-", 3)
    seed(server, b_key, "iso-", 5)
    # Objects only A has.
    seed(server, API_KEY, "only-a-", 2)
    eventually(lambda: usage_of(server, API_KEY, "only-a-")["charges_usage"][0]["events_count"] == 2)
    eventually(lambda: usage_of(server, API_KEY, "iso-")["charges_usage"][0]["events_count"] == 3)
    eventually(lambda: usage_of(server, b_key, "iso-")["charges_usage"][0]["events_count"] == 5)
    # An invoice of A's: terminating its subscription bills it.
    assert call(server, "DELETE", "subscriptions/only-a-sub", API_KEY).status_code == 200
    invoices = call(server, "GET", "invoices", API_KEY, external_customer_id="only-a-cust").json()["invoices"]
    assert len(invoices) == 1
    fee = invoices[0]["fees"][0]["lago_id"] if invoices[0].get("fees") else \
        call(server, "GET", f"invoices/{invoices[0]['lago_id']}", API_KEY).json()["invoice"]["fees"][0]["lago_id"]
    return {"b_id": b_id, "b_key": b_key, "invoice": invoices[0]["lago_id"], "fee": fee}


def test_same_codes_and_ids_stay_apart(server, tenants):
    b_key = tenants["b_key"]
    # 3 calls × 1.00 EUR in A, 5 in B, under the same subscription id.
    assert usage_of(server, API_KEY, "iso-")["amount_cents"] == 300
    assert usage_of(server, b_key, "iso-")["amount_cents"] == 500
    for path, root in [("customers", "customers"), ("plans", "plans"), ("billable_metrics", "billable_metrics"),
                       ("taxes", "taxes"), ("subscriptions", "subscriptions"), ("invoices", "invoices"),
                       ("events", "events")]:
        listed = call(server, "GET", path, b_key, per_page=1000).json()[root]
        text = str(listed)
        assert "only-a-" not in text, f"B's {path} list shows A's objects"
    assert call(server, "GET", "events", b_key, per_page=1000).json()["meta"]["total_count"] == 5


def test_b_key_on_a_objects_answers_404_and_changes_nothing(server, tenants):
    b_key, invoice = tenants["b_key"], tenants["invoice"]
    routes = [
        ("GET", "customers/only-a-cust", None, {}),
        ("DELETE", "customers/only-a-cust", None, {}),
        ("GET", "customers/only-a-cust/current_usage", None, {"external_subscription_id": "only-a-sub"}),
        ("GET", "customers/only-a-cust/projected_usage", None, {"external_subscription_id": "only-a-sub"}),
        ("GET", "customers/only-a-cust/past_usage", None, {"external_subscription_id": "only-a-sub"}),
        ("GET", "plans/only-a-plan", None, {}),
        ("PUT", "plans/only-a-plan", {"plan": {"name": "hijacked"}}, {}),
        ("DELETE", "plans/only-a-plan", None, {}),
        ("GET", "billable_metrics/only-a-calls", None, {}),
        ("PUT", "billable_metrics/only-a-calls", {"billable_metric": {"name": "hijacked"}}, {}),
        ("DELETE", "billable_metrics/only-a-calls", None, {}),
        ("GET", "taxes/only-a-vat", None, {}),
        ("PUT", "taxes/only-a-vat", {"tax": {"name": "hijacked"}}, {}),
        ("DELETE", "taxes/only-a-vat", None, {}),
        ("GET", "subscriptions/only-a-sub", None, {}),
        ("PUT", "subscriptions/only-a-sub", {"subscription": {"name": "hijacked"}}, {}),
        ("DELETE", "subscriptions/only-a-sub", None, {}),
        ("GET", "events/only-a-tx-0", None, {}),
        ("GET", f"invoices/{invoice}", None, {}),
        ("PUT", f"invoices/{invoice}", {"invoice": {"metadata": []}}, {}),
        ("PUT", f"invoices/{invoice}/finalize", None, {}),
        ("PUT", f"invoices/{invoice}/refresh", None, {}),
        ("GET", f"fees/{tenants['fee']}", None, {}),
        ("GET", "customers/only-a-cust/invoices", None, {}),
        ("GET", "customers/only-a-cust/subscriptions", None, {}),
    ]
    for method, path, body, params in routes:
        answer = call(server, method, path, b_key, body, **params)
        assert answer.status_code in (404, 405), (method, path, answer.status_code, answer.text)
        if answer.status_code == 405:
            assert answer.json()["status"] == 405  # a route tally does not serve: in Lago's shape
    # Nothing of A's changed.
    assert call(server, "GET", "plans/only-a-plan", API_KEY).json()["plan"]["name"] == "Plan"
    assert call(server, "GET", "billable_metrics/only-a-calls", API_KEY).json()["billable_metric"]["name"] == "Calls"
    assert call(server, "GET", "taxes/only-a-vat", API_KEY).json()["tax"]["name"] == "VAT"
    assert call(server, "GET", "customers/only-a-cust", API_KEY).status_code == 200
    assert call(server, "GET", "events/only-a-tx-0", API_KEY).status_code == 200
    assert call(server, "GET", f"invoices/{invoice}", API_KEY).status_code == 200
    assert call(server, "GET", f"fees/{tenants['fee']}", API_KEY).status_code == 200


def test_keys_are_created_listed_and_revoked_at_once(server, tenants):
    b_id = tenants["b_id"]
    second = server.cli(["api-keys", "create", "--organization", b_id]).strip()
    assert second.startswith("API key: ")
    second = second.removeprefix("API key: ")
    assert call(server, "GET", "customers", second).status_code == 200
    listing = server.cli(["api-keys", "list", "--organization", b_id]).splitlines()
    assert len(listing) == 2
    assert all(tenants["b_key"] not in line and second not in line for line in listing), "only prefixes are shown"
    line = next(l for l in listing if second[:8] in l)
    key_id = line.split()[0]
    server.cli(["api-keys", "revoke", "--organization", b_id, key_id])
    # Refused on the very next request, though the server cached the organization.
    revoked = call(server, "GET", "customers", second)
    assert revoked.status_code == 401 and revoked.json()["status"] == 401
    assert call(server, "GET", "customers", tenants["b_key"]).status_code == 200
    assert len(server.cli(["api-keys", "list", "--organization", b_id]).splitlines()) == 1

"""End to end: the official Lago Python client drives a real `tally serve`, and `tally bill`
closes a billing period on the same data while the server runs.

Amounts are checked by hand in the comments.
"""

import os
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    BatchEvent,
    BillableMetric,
    BillableMetricFilter,
    Charge,
    ChargeFilter,
    Customer,
    Event,
    Plan,
    Subscription,
    Tax,
)
from lago_python_client.models.billable_metric import BillableMetricFilters
from lago_python_client.models.charge import ChargeFilters, Charges

from conftest import API_KEY

NOW = datetime.now(timezone.utc)
THIS_MONTH = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
LAST_MONTH = (THIS_MONTH - timedelta(days=1)).replace(day=1)
LAST_MONTH_MID = int((LAST_MONTH + timedelta(days=9, hours=12)).timestamp())
THIS_MONTH_START = int(THIS_MONTH.timestamp())


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def status_of(call) -> int:
    with pytest.raises(LagoApiError) as error:
        call()
    return error.value.status_code


@pytest.fixture(scope="module")
def catalog(client):
    client.taxes.create(Tax(name="VAT", code="vat", rate=10.0, applied_to_organization=True))
    calls = client.billable_metrics.create(BillableMetric(name="API calls", code="api_calls", aggregation_type="count_agg"))
    storage = client.billable_metrics.create(
        BillableMetric(
            name="Storage",
            code="storage_gb",
            aggregation_type="sum_agg",
            field_name="gb",
            filters=BillableMetricFilters(__root__=[BillableMetricFilter(key="region", values=["eu", "us"])]),
        )
    )
    plan = client.plans.create(
        Plan(
            name="E2E",
            code="e2e",
            interval="monthly",
            amount_cents=10000,
            amount_currency="USD",
            pay_in_advance=False,
            charges=Charges(
                __root__=[
                    Charge(billable_metric_id=calls.lago_id, charge_model="standard", properties={"amount": "0.5"}),
                    Charge(
                        billable_metric_id=storage.lago_id,
                        charge_model="graduated",
                        properties={
                            "graduated_ranges": [
                                {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
                                {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "0"},
                            ]
                        },
                    ),
                ]
            ),
        )
    )
    return {"calls": calls, "storage": storage, "plan": plan}


def test_health_and_organization(server):
    assert httpx.get(f"{server.url}/health").json()["message"] == "Success"
    organization = server.get("organizations").json()["organization"]
    assert organization["name"] == "tally"
    assert server.get("organizations", key="wrong").status_code == 401


def test_billable_metrics_crud_and_expressions(client, server, catalog):
    assert client.billable_metrics.find("api_calls").aggregation_type == "count_agg"
    codes = [m.code for m in client.billable_metrics.find_all()["billable_metrics"]]
    assert {"api_calls", "storage_gb"} <= set(codes)
    temp = client.billable_metrics.create(
        BillableMetric(name="Temp", code="temp", aggregation_type="max_agg", field_name="v")
    )
    updated = client.billable_metrics.update(BillableMetric(name="Renamed"), "temp")
    assert (updated.lago_id, updated.name) == (temp.lago_id, "Renamed")
    client.billable_metrics.destroy("temp")
    assert status_of(lambda: client.billable_metrics.find("temp")) == 404
    # recurring is refused for max_agg, with Lago's code
    with pytest.raises(LagoApiError) as error:
        client.billable_metrics.create(
            BillableMetric(name="Bad", code="bad", aggregation_type="max_agg", field_name="v", recurring=True)
        )
    assert error.value.status_code == 422
    # 3 GB for 5400 s = 4.5 GB-hours. (The client's evaluate_expression sends no body in
    # lago-python-client 1.55.0, so this one call goes through httpx.)
    result = httpx.post(
        f"{server.url}/api/v1/billable_metrics/evaluate_expression",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"expression": "event.properties.gb * event.properties.seconds / 3600",
              "event": {"code": "x", "properties": {"gb": 3, "seconds": 5400}}},
    )
    assert result.json() == {"expression_result": {"value": "4.5"}}


def test_taxes_and_plans_crud(client, catalog):
    assert client.taxes.find("vat").rate == 10.0
    client.taxes.create(Tax(name="Temp", code="temp_tax", rate=5.5))
    assert client.taxes.update(Tax(rate=6.0), "temp_tax").rate == 6.0
    client.taxes.destroy("temp_tax")
    assert status_of(lambda: client.taxes.find("temp_tax")) == 404

    plan = client.plans.find("e2e")
    assert [c.charge_model for c in plan.charges.__root__] == ["standard", "graduated"]
    other = client.plans.create(
        Plan(
            name="Other",
            code="other",
            interval="yearly",
            amount_cents=100,
            amount_currency="EUR",
            charges=Charges(
                __root__=[
                    Charge(
                        billable_metric_id=catalog["storage"].lago_id,
                        charge_model="package",
                        properties={"amount": "5", "package_size": 100, "free_units": 10},
                        filters=ChargeFilters(
                            __root__=[
                                ChargeFilter(
                                    invoice_display_name="EU",
                                    values={"region": ["eu"]},
                                    properties={"amount": "4", "package_size": 100, "free_units": 0},
                                )
                            ]
                        ),
                    )
                ]
            ),
        )
    )
    assert other.charges.__root__[0].filters.__root__[0].values == {"region": ["eu"]}
    assert client.plans.update(Plan(name="Other 2"), "other").name == "Other 2"
    assert "other" in [p.code for p in client.plans.find_all()["plans"]]
    client.plans.destroy("other")
    assert status_of(lambda: client.plans.find("other")) == 404
    # a numeric amount is refused, as Lago does
    with pytest.raises(LagoApiError) as error:
        client.plans.create(
            Plan(
                name="Bad",
                code="bad",
                interval="monthly",
                amount_cents=1,
                amount_currency="USD",
                charges=Charges(
                    __root__=[
                        Charge(billable_metric_id=catalog["calls"].lago_id, charge_model="standard", properties={"amount": 1})
                    ]
                ),
            )
        )
    assert error.value.status_code == 422
    assert error.value.response["error_details"] == {"properties": ["invalid_amount"]}


def test_customers_crud(client):
    created = client.customers.create(Customer(external_id="cust-x", name="X", currency="EUR", timezone="Asia/Kolkata"))
    assert created.applicable_timezone == "Asia/Kolkata"
    updated = client.customers.create(Customer(external_id="cust-x", name="X2"))  # upsert
    assert (updated.lago_id, updated.name) == (created.lago_id, "X2")
    assert client.customers.find("cust-x").name == "X2"
    assert "cust-x" in [c.external_id for c in client.customers.find_all()["customers"]]
    client.customers.destroy("cust-x")
    assert status_of(lambda: client.customers.find("cust-x")) == 404
    assert status_of(lambda: client.customers.create(Customer(external_id="tz", timezone="Mars/Olympus"))) == 422


def test_a_full_billing_period(client, server, catalog):
    # The subscription started at the beginning of last month; its customer is created with it.
    subscription = client.subscriptions.create(
        Subscription(external_customer_id="acme", plan_code="e2e", external_id="acme-main", subscription_at=iso(LAST_MONTH))
    )
    assert subscription.status == "active"
    assert client.customers.find("acme").external_id == "acme"

    # Last month: 7 calls (one single, six in a batch) and 4 + 12.5 GB of storage.
    client.events.create(Event(transaction_id="c-0", external_subscription_id="acme-main", code="api_calls", timestamp=LAST_MONTH_MID))
    client.events.batch_create(
        BatchEvent(
            events=[
                Event(transaction_id=f"c-{i}", external_subscription_id="acme-main", code="api_calls", timestamp=LAST_MONTH_MID)
                for i in range(1, 7)
            ]
            + [
                Event(transaction_id="s-1", external_subscription_id="acme-main", code="storage_gb",
                      timestamp=LAST_MONTH_MID, properties={"gb": 4, "region": "eu"}),
                Event(transaction_id="s-2", external_subscription_id="acme-main", code="storage_gb",
                      timestamp=str(LAST_MONTH_MID) + ".250", properties={"gb": "12.5", "region": "us"}),
            ]
        )
    )
    server.wait_for_events(9, external_subscription_id="acme-main")
    # A repeat is refused and changes nothing.
    duplicate = Event(transaction_id="c-0", external_subscription_id="acme-main", code="api_calls", timestamp=LAST_MONTH_MID)
    with pytest.raises(LagoApiError) as error:
        client.events.create(duplicate)
    assert error.value.status_code == 422
    assert error.value.response["error_details"] == {"transaction_id": ["value_already_exist"]}
    event = client.events.find("s-2")
    assert event.properties == {"gb": "12.5", "region": "us"}
    listed = server.get("events", external_subscription_id="acme-main").json()
    assert listed["meta"]["total_count"] == 9

    # This month: 2 calls, live in current usage: 2 × 0.5 = 1.00, VAT 10 % = 0.10.
    client.events.create(Event(transaction_id="now-1", external_subscription_id="acme-main", code="api_calls"))
    client.events.create(Event(transaction_id="now-2", external_subscription_id="acme-main", code="api_calls"))
    server.wait_for_events(11, external_subscription_id="acme-main")
    usage = client.customers.current_usage("acme", "acme-main")
    assert (usage.amount_cents, usage.taxes_amount_cents, usage.total_amount_cents) == (100, 10, 110)
    assert usage.from_datetime == iso(THIS_MONTH)
    projected = server.get("customers/acme/projected_usage", external_subscription_id="acme-main").json()
    assert projected["customer_projected_usage"]["amount_cents"] == 100

    # Close the period with `tally bill`, twice: one invoice.
    assert "issued 1 invoice(s)" in server.bill(iso(NOW))
    assert "issued 0 invoice(s)" in server.bill(iso(NOW))

    invoices = client.invoices.find_all({"external_customer_id": "acme"})["invoices"]
    assert len(invoices) == 1
    invoice = client.invoices.find(invoices[0].lago_id)
    # Subscription 100.00 (whole month) + calls 7 × 0.5 = 3.50 + storage graduated
    # 16.5 GB: 10 × 1.00 + 6.5 × 0.50 = 13.25 → fees 116.75; VAT 10 % = 11.675 → 11.68; total 128.43.
    assert [f.amount_cents for f in invoice.fees.__root__] == [10000, 350, 1325]
    assert (invoice.fees_amount_cents, invoice.taxes_amount_cents, invoice.total_amount_cents) == (11675, 1168, 12843)
    assert invoice.status == "finalized"
    assert invoice.number.endswith("-001")
    assert client.invoices.finalize(invoice.lago_id).status == "finalized"
    assert status_of(lambda: client.invoices.refresh(invoice.lago_id)) == 405

    fees = client.fees.find_all({"external_subscription_id": "acme-main"})["fees"]
    assert sorted(f.amount_cents for f in fees) == [350, 1325, 10000]
    storage_fee = client.fees.find(invoice.fees.__root__[2].lago_id)
    assert storage_fee.units == "16.5"

    past = client.customers.past_usage("acme", "acme-main")
    assert past["usage_periods"][0].amount_cents == 1675

    # Terminating issues the final invoice of this month so far.
    terminated = client.subscriptions.destroy("acme-main")
    assert terminated.status == "terminated"
    invoices = client.invoices.find_all({"external_customer_id": "acme"})["invoices"]
    assert len(invoices) == 2
    assert status_of(lambda: client.subscriptions.find("nope")) == 404


def test_subscriptions_list_update_and_errors(client, server, catalog):
    created = client.subscriptions.create(Subscription(external_customer_id="beta", plan_code="e2e", external_id="beta-1"))
    assert client.subscriptions.find("beta-1").lago_id == created.lago_id
    assert client.subscriptions.update(Subscription(name="Renamed"), "beta-1").name == "Renamed"
    listed = client.subscriptions.find_all({"external_customer_id": "beta"})["subscriptions"]
    assert [s.external_id for s in listed] == ["beta-1"]
    assert status_of(
        lambda: client.subscriptions.create(Subscription(external_customer_id="beta", plan_code="missing", external_id="x"))
    ) == 404
    # events for a subscription that does not exist yet are accepted (and wait for it); they
    # count once a subscription starting before them exists (Lago bills from `started_at`)
    client.events.create(Event(transaction_id="w-1", external_subscription_id="future-sub", code="api_calls"))
    server.wait_for_events(1, external_subscription_id="future-sub")
    client.subscriptions.create(
        Subscription(external_customer_id="gamma", plan_code="e2e", external_id="future-sub", subscription_at=iso(THIS_MONTH))
    )
    usage = client.customers.current_usage("gamma", "future-sub")
    assert usage.charges_usage[0].events_count == 1


@pytest.mark.skipif(os.environ.get("TALLY_E2E_BACKEND") == "aws", reason="DynamoDB takes several servers")
def test_a_second_server_on_the_same_data_is_refused(server):
    import subprocess

    from conftest import server_env, storage_args, tally_binary

    second = subprocess.run(
        [tally_binary(), "serve", "--addr", "127.0.0.1:0"] + storage_args(server.data_dir),
        env=server_env(), capture_output=True, text=True, timeout=60,
    )
    assert second.returncode != 0
    assert "another `tally serve` is running" in second.stderr


def test_a_batch_of_a_hundred_events_counts_each_once(client, server, catalog):
    client.subscriptions.create(Subscription(external_customer_id="bulk", plan_code="e2e", external_id="bulk-1"))
    events = [Event(transaction_id=f"bulk-{i}", external_subscription_id="bulk-1", code="api_calls") for i in range(100)]
    client.events.batch_create(BatchEvent(events=events))
    server.wait_for_events(100, external_subscription_id="bulk-1")
    # Sent again: every one is refused, nothing counts twice.
    with pytest.raises(LagoApiError) as error:
        client.events.batch_create(BatchEvent(events=events))
    assert error.value.status_code == 422
    assert len(error.value.response["error_details"]) == 100
    usage = client.customers.current_usage("bulk", "bulk-1")
    # 100 calls × 0.50 = 50.00
    assert (usage.charges_usage[0].events_count, usage.amount_cents) == (100, 5000)


@pytest.mark.skipif(os.environ.get("TALLY_E2E_BACKEND") != "aws", reason="the queue exists on the AWS backend")
def test_a_producer_can_write_events_straight_to_the_queue(client, server, catalog):
    import boto3  # installed with moto (tests/requirements.txt)

    from conftest import queue_name

    client.subscriptions.create(Subscription(external_customer_id="direct", plan_code="e2e", external_id="direct-1"))
    sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    url = sqs.get_queue_url(QueueName=queue_name())["QueueUrl"]
    body = '{"events": [{"transaction_id": "q-1", "external_subscription_id": "direct-1", "code": "api_calls"},' \
           ' {"transaction_id": "q-2", "external_subscription_id": "direct-1", "code": "api_calls"}]}'
    sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.send_message(QueueUrl=url, MessageBody=body)  # sent twice: counted once
    server.wait_for_events(2, external_subscription_id="direct-1")
    usage = client.customers.current_usage("direct", "direct-1")
    # 2 calls × 0.50 = 1.00
    assert (usage.charges_usage[0].events_count, usage.amount_cents) == (2, 100)

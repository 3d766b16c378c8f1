"""The period-close state machine (infra/period-close.asl.json) is a well-formed graph that only
calls tasks the period-close Lambda knows, and retries only what that Lambda calls retryable."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "infra" / "period-close.asl.json").read_text())
LAMBDA = (ROOT / "functions" / "period-close" / "src" / "lib.rs").read_text()


def all_states(machine):
    """Every state, including those inside Map item processors."""
    for name, state in machine["States"].items():
        yield name, state, machine
        if state["Type"] == "Map":
            yield from all_states(state["ItemProcessor"])


def targets(state):
    if "Next" in state:
        yield state["Next"]
    if "Default" in state:
        yield state["Default"]
    for choice in state.get("Choices", []):
        yield choice["Next"]


def test_every_transition_lands_on_a_state_and_every_state_is_reachable():
    for machine in [ASL] + [s["ItemProcessor"] for _, s, _ in all_states(ASL) if s["Type"] == "Map"]:
        names = set(machine["States"])
        assert machine["StartAt"] in names
        reached, frontier = set(), [machine["StartAt"]]
        while frontier:
            name = frontier.pop()
            if name in reached:
                continue
            reached.add(name)
            for target in targets(machine["States"][name]):
                assert target in names, f"{name} → {target}"
                frontier.append(target)
        assert reached == names, f"unreachable: {names - reached}"


def test_tasks_exist_in_the_lambda_and_retry_its_retryable_errors():
    # The Rust enum `Task` is serde-tagged `task` with snake_case variant names.
    variants = {re.sub(r"(?<!^)(?=[A-Z])", "_", v).lower() for v in re.findall(r"^\s{4}(\w+) \{", LAMBDA, re.M)}
    assert {"prepare", "close_page"} <= variants
    assert '"Retryable"' in LAMBDA
    tasks = [(n, s) for n, s, _ in all_states(ASL) if s["Type"] == "Task"]
    assert len(tasks) == 2
    for name, state in tasks:
        payload = state["Parameters"]["Payload"]
        assert payload["task"] in variants, name
        assert state["Parameters"]["FunctionName"] == "${PeriodCloseFunctionArn}", name
        assert any("Retryable" in r["ErrorEquals"] for r in state["Retry"]), name
        assert not any("NonRetryable" in r["ErrorEquals"] for r in state["Retry"]), name


def test_the_map_runs_each_shard_as_a_child_execution_that_pages_until_done():
    close = ASL["States"]["CloseShards"]
    assert close["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert close["ItemsPath"] == "$.shards"
    child = close["ItemProcessor"]["States"]
    # The page a task answers (`next`) is the `after` of the next call, until it is null.
    assert child["ClosePage"]["ResultSelector"]["after.$"] == "$.Payload.next"
    assert child["ClosePage"]["Parameters"]["Payload"]["after.$"] == "$.after"
    assert child["MorePages"]["Choices"][0]["Next"] == "ClosePage"
    assert child["MorePages"]["Default"] == "ShardClosed"

"""The conversion benchmark's bookkeeping: which copy each route is measured against, and the order of the rounds."""

from __future__ import annotations

from benchmarks.convert_scale import (
    CKPT_TO_SAFETENSORS,
    CP_SYNC,
    CP_SYNC_CKPT,
    CP_SYNC_SAFETENSORS,
    KERNEL_COPY,
    Result,
    percent_down,
    shuffled,
    table,
    targets,
    yardstick,
)

GB = 10**9
PTH = "automap convert .pth -> .ckpt"
ST = "automap convert .safetensors -> .safetensors --no-verify"


def test_each_route_is_measured_against_the_copy_of_the_file_it_reads() -> None:
    assert yardstick(PTH) == CP_SYNC
    assert yardstick(PTH + " --no-verify") == CP_SYNC
    assert yardstick(ST) == CP_SYNC_SAFETENSORS
    assert yardstick(KERNEL_COPY) == CP_SYNC_SAFETENSORS
    assert yardstick(CKPT_TO_SAFETENSORS) == CP_SYNC_CKPT
    assert yardstick(CKPT_TO_SAFETENSORS + " --no-verify") == CP_SYNC_CKPT


def test_each_round_runs_every_route_once_in_an_order_of_its_own() -> None:
    routes = [f"route {i}" for i in range(8)]
    orders = [shuffled(routes, round_) for round_ in range(1, 13)]
    assert all(sorted(order) == sorted(routes) for order in orders)
    assert orders == [shuffled(routes, round_) for round_ in range(1, 13)]  # the same in every run
    assert routes == [f"route {i}" for i in range(8)]  # the list given is left as it was
    for route in routes:  # neither the route before it nor its place in the round is always the same
        before = {order[order.index(route) - 1] for order in orders if order.index(route)}
        assert len(before) > 1
        assert len({order.index(route) for order in orders}) > 1


def _results(route: str, *seconds: float) -> list[Result]:
    return [Result(route, s, 4 * GB, 50 * 10**6, 0) for s in seconds]


def test_ratios_and_verdicts_use_the_yardstick_of_the_same_file() -> None:
    # The .pth copy is fast and the .safetensors copy slow: measured against the .pth copy, the safetensors route
    # would fail its target; against its own file's copy it runs at the same speed and passes.
    runs = {
        CP_SYNC: _results(CP_SYNC, 5.0, 5.0, 5.0),
        CP_SYNC_SAFETENSORS: _results(CP_SYNC_SAFETENSORS, 8.0, 8.0, 8.0),
        PTH: _results(PTH, 6.0, 5.0, 10.0),
        ST: _results(ST, 8.0, 8.0, 8.0),
    }
    lines = targets(runs, 262 * 10**6)
    assert f"FAIL {PTH}: throughput 83.3% of {CP_SYNC} (median of 3 rounds, worst round 50.0%; target >= 90%)" in lines
    assert (
        f"PASS {ST}: throughput 100.0% of {CP_SYNC_SAFETENSORS} (median of 3 rounds, worst round 100.0%"
        in "\n".join(lines)
    )
    row = next(line for line in table(runs, 262 * 10**6).splitlines() if line.startswith(f"| {ST} "))
    assert "| 1.00 (1.00-1.00) |" in row


def test_a_ratio_just_below_its_target_never_reads_as_the_target() -> None:
    assert percent_down(0.9498) == "94.9%"
    assert percent_down(0.95) == "95.0%"
    assert percent_down(0.8333) == "83.3%"
    assert percent_down(1.0) == "100.0%"

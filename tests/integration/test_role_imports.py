"""Each role's process imports only what it runs: a hub, an exit and a user, started by the real CLI
under `-X importtime`, have not loaded the libraries their idle start does not use (rjieba's 33 MB
dictionary, Lexbor, PyYAML, prometheus_client, segno, psycopg): those load when a page, a scrape,
a subscription or a store asks for them (benchmarks/startup.py measures what this saves)."""

from __future__ import annotations

from harness import LADDER, Network, free_port, wait_for

IMPORTTIME = ("-X", "importtime", *LADDER)
NOT_AT_START = ("rjieba", "selectolax", "yaml", "prometheus_client", "segno", "psycopg")


def imported(log: str) -> set[str]:
    """The modules an `-X importtime` log says the process imported."""
    return {line.rsplit("|", 1)[1].strip() for line in log.splitlines()
            if line.startswith("import time:") and "self [us]" not in line}


def heavy(log: str) -> set[str]:
    """The packages of NOT_AT_START that the process imported."""
    return {name.split(".")[0] for name in imported(log)} & set(NOT_AT_START)


def test_a_hub_an_exit_and_a_user_start_without_the_libraries_they_do_not_run(tmp_path):
    root = tmp_path
    net = Network(root, hub_command=[*IMPORTTIME, "hub", "run", "--dir", str(root / "hub"),
                                     "--admin", "127.0.0.1:0"])
    try:
        sharer = net.exit("sharer", "DE", launcher=IMPORTTIME)
        user = net.member("user", "--proxy", f"127.0.0.1:{free_port()}", launcher=IMPORTTIME)
        user.wait_exits(1)
        # Up, linked, and the hub's admin page and the agents' dashboards listening: start is over.
        wait_for(lambda: "ladder.app.admin" in imported(net.hub.output()), 20, "the hub's admin page")
        for name, proc in (("hub", net.hub), ("sharer", sharer.proc), ("user", user.proc)):
            log = proc.output()
            assert "ladder.cli" in imported(log), f"{name}: no -X importtime lines in its log"
            assert not heavy(log), f"the {name} imported at start what it does not run: {sorted(heavy(log))}"
    finally:
        net.close()

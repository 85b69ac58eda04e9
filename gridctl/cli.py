"""The ``gridctl`` command line: parses arguments and calls one function per command."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridctl.core import INTERVAL_S, MICRO, GridctlError, service_clock

app = typer.Typer(
    help="gridctl: feeder-safe energy sharing for community microgrids.", no_args_is_help=True
)
ledger_app = typer.Typer(help="Inspect and check settlement ledgers.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
console = Console()
err_console = Console(stderr=True)


def _run_service(start: Callable[[], Coroutine[Any, Any, None]], verbose: bool) -> None:
    """Run a long-running service until Ctrl-C, with timestamped logs (INFO with --verbose).

    start: builds the service and runs it, all inside the running event loop (clients such as
    pymodbus's bind to it when made); its errors become one line and exit code 2.
    """
    import asyncio

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        asyncio.run(start())
    except KeyboardInterrupt:
        pass
    except GridctlError as e:
        raise _fail(e) from None


def _fail(e: GridctlError) -> typer.Exit:
    """Print ``e`` as one line on stderr (line breaks folded, markup escaped); exit code 2."""
    text = escape(" ".join(str(e).split()))
    err_console.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _say(text: str) -> None:
    """One line on standard output, as it is (no markup, highlighting or wrapping)."""
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def _in_range(option: str, value: int | None, low: int, high: int) -> None:
    """GridctlError unless an integer option is None or within [low, high]."""
    if value is not None and not low <= value <= high:
        raise GridctlError(f"{option} {value}: must be {low}-{high}")


@app.command()
def sim(
    scenario: Annotated[
        Path | None, typer.Argument(help="scenario YAML (default: the packaged default)")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="directory for kpis.json, ledger.sqlite and report.html")
    ] = Path("gridctl-out"),
    seed: Annotated[int | None, typer.Option(help="override the scenario's random seed")] = None,
    intervals: Annotated[
        int | None, typer.Option(help=f"override the number of {INTERVAL_S // 60}-minute intervals")
    ] = None,
    dispatch: Annotated[
        str, typer.Option(help="none (self-consumption), home (each home alone) or community")
    ] = "community",
    wire: Annotated[
        bool, typer.Option(help="every household a real controller over MQTT and Modbus")
    ] = False,
    broker: Annotated[
        str,
        typer.Option(
            help="with --wire: auto (Mosquitto when installed, else the embedded "
            "broker), mosquitto or embedded"
        ),
    ] = "auto",
    openadr: Annotated[
        str | None,
        typer.Option(
            help="the grid operator's OpenADR 2.0b VTN (URL): its events, dated in the "
            "scenario's time, set the envelopes; it gets the transformer's reports"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the KPIs as JSON")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="validate scenario, feeder, buses and profiles; exit")
    ] = False,
) -> None:
    """Simulate a community on a virtual feeder and write KPIs, ledger and report."""
    from gridctl.coordinator.assembly import DISPATCH_MODES
    from gridctl.sim.run import check_scenario, run_sim
    from gridctl.transport.launcher import BROKER_NAMES

    logging.basicConfig(level=logging.WARNING)
    if dispatch not in DISPATCH_MODES:
        raise _fail(GridctlError(f"--dispatch must be one of {', '.join(DISPATCH_MODES)}"))
    if broker != "auto" and not wire:
        raise _fail(GridctlError("--broker goes with --wire"))
    if check:
        try:
            scn = check_scenario(scenario, seed, intervals, dispatch, openadr)  # type: ignore[arg-type]
        except GridctlError as e:
            raise _fail(e) from None
        _say(f"scenario {scn.name!r} is valid: {len(scn.households)} households, "
             f"{scn.intervals} intervals")  # fmt: skip
        return
    try:
        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,  # a log file gets no bar (nor its last newline)
        ) as bar:
            task = bar.add_task("sim", total=None)
            res = run_sim(
                scenario,
                out,
                seed,
                intervals,
                lambda done, total: bar.update(task, completed=done, total=total),
                dispatch,  # type: ignore[arg-type]
                wire,
                broker,
                openadr,
            )
    except GridctlError as e:
        raise _fail(e) from None
    if res.broker is not None:  # on stderr, so that --json output stays JSON
        err_console.print(f"broker: {BROKER_NAMES[res.broker]}", highlight=False)
    if as_json:
        console.print_json(json.dumps(res.kpis))
        return
    table = Table(title=f"gridctl sim: {res.kpis['scenario']}", show_header=True)
    table.add_column("KPI")
    table.add_column("value", justify="right", overflow="fold")
    for k, v in res.kpis.items():
        table.add_row(k, str(v))
    console.print(table)
    console.print(f"report: {res.report_path.resolve()}")
    console.print(f"kpis:   {res.kpis_path.resolve()}")
    console.print(f"ledger: {res.ledger_path.resolve()}")


@app.command()
def web(
    config: Annotated[
        Path | None, typer.Argument(help="a coordinator's YAML (serve its running community)")
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option("--run", help="a simulation's output directory (`gridctl sim --out`)"),
    ] = None,
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    broker_secret: Annotated[
        Path | None,
        typer.Option(
            help="the broker user web's password file (default: web.secret beside CONFIG)"
        ),
    ] = None,
) -> None:
    """Serve the community web app: for a running coordinator (CONFIG; live values, governance
    and votes, households' logins set by `gridctl coordinator web-login`), or over a finished
    simulation (--run DIR; household logins printed at start)."""
    from gridctl.web.serve import serve_coordinator, serve_run

    try:
        if (config is None) == (run is None):
            raise GridctlError("give a coordinator CONFIG or --run DIR (one of them)")
        _in_range("--port", port, 1, 65535)
        if config is not None:
            serve_coordinator(config, host, port, _say, broker_secret)
        else:
            assert run is not None
            serve_run(run, host, port, _say)
    except GridctlError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        pass


@ledger_app.command("verify")
def ledger_verify(
    db: Annotated[Path, typer.Argument(help="ledger.sqlite file")],
    roots: Annotated[
        list[Path] | None,
        typer.Option("--roots", help="roots a household kept (`gridctl controller roots`)"),
    ] = None,
    head: Annotated[
        str | None, typer.Option(help="a published root chain value (hex) the ledger must hold")
    ] = None,
) -> None:
    """Recompute the hash chain, the interval roots, what they cover and the balances, and
    check them against the roots households kept (exit 1 if anything differs)."""
    from gridctl.settlement.audit import verify_ledger
    from gridctl.settlement.roots import load_roots_file

    try:
        files = [load_roots_file(f) for f in roots or []]
        keys = {f.coordinator_key for f in files}
        if len(keys) > 1:
            raise GridctlError("the roots files trust different coordinator keys")
        if head is not None and not re.fullmatch(r"[0-9a-f]{64}", head):
            raise GridctlError("--head: 64 lowercase hex digits (a root's chain value)")
        check = verify_ledger(
            db,
            [r for f in files for r in f.roots],
            bytes.fromhex(keys.pop()) if keys else None,
            head,
        )
    except GridctlError as e:
        raise _fail(e) from None
    if check.ok:
        console.print(
            f"ledger intact: {check.entries} entries, {check.transactions} transactions, "
            f"{check.intervals_closed} interval roots signed and chained (chain head "
            f"{check.chain_head}), {check.published} published roots matched, "
            f"{check.token_supply / MICRO:g} tokens "
            f"issued, head {check.head}",
            soft_wrap=True,
        )
        return
    err_console.print(
        f"[bold red]ledger broken:[/] {escape(check.problem)}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)


def _interval_arg(value: str | None, name: str) -> int | None:
    """An interval index, or an ISO time with a zone (the interval containing it)."""
    from datetime import datetime

    from gridctl.core import interval_of

    if value is None:
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        return interval_of(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError as e:
        raise GridctlError(
            f"{name}: {value!r} is neither an interval index nor a time ({e})"
        ) from None


@ledger_app.command("statement")
def ledger_statement(
    db: Annotated[Path, typer.Argument(help="ledger.sqlite file")],
    household: Annotated[str, typer.Argument(help="household id, e.g. h07")],
    first: Annotated[
        str | None, typer.Option("--from", help="first interval: index or ISO time with zone")
    ] = None,
    last: Annotated[
        str | None, typer.Option("--to", help="last interval (inclusive): index or ISO time")
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="print CSV instead of a table")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """What a household gave, got, paid and earned, interval by interval, with totals."""
    import csv
    import io

    from gridctl.settlement.statement import statement

    try:
        rows = statement(db, household, _interval_arg(first, "--from"), _interval_arg(last, "--to"))
    except GridctlError as e:
        raise _fail(e) from None
    dicts = [r.as_dict() for r in rows]
    if as_json:
        console.print_json(json.dumps(dicts))
        return
    cols = list(dicts[0]) if dicts else ["interval"]
    if as_csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(dicts)
        typer.echo(buf.getvalue(), nl=False)
        return
    # the table leaves out the case's explanation (JSON, in --json and --csv), and the held
    # amounts and case when there are none, to stay readable
    quiet = {c for c in ("held", "held_tokens", "case") if not any(d[c] for d in dicts)}
    cols = [c for c in cols if c != "why" and c not in quiet]
    table = Table(title=f"statement of {household}: {len(rows)} intervals")
    for c in cols:
        left = c in ("start", "status", "reason", "case")
        table.add_column(c, justify="left" if left else "right")
    for d in dicts:
        table.add_row(*(_shown(d[c], "") for c in cols))
    if dicts:
        summed = ("import_wh", "export_wh", "paid", "earned", "grid", "tokens")
        tot = {k: sum(d[k] or 0 for d in dicts) for k in (*summed, "held", "held_tokens")}
        table.add_row(*(_shown(tot[c]) if c in tot else "total" if c == "interval" else ""
                        for c in cols))  # fmt: skip
    console.print(table)


@ledger_app.command("proof")
def ledger_proof(
    db: Annotated[Path, typer.Argument(help="ledger.sqlite file")],
    household: Annotated[str, typer.Argument(help="household id, e.g. h07")],
    interval: Annotated[str, typer.Argument(help="interval index or ISO time with zone")],
    out: Annotated[Path | None, typer.Option(help="write the proof to this file")] = None,
) -> None:
    """Print the Merkle inclusion proof of a household's entries in one interval (JSON)."""
    from gridctl.settlement.statement import inclusion_proof

    try:
        iv = _interval_arg(interval, "INTERVAL")
        assert iv is not None
        doc = inclusion_proof(db, household, iv)
    except GridctlError as e:
        raise _fail(e) from None
    text = json.dumps(doc, indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
        err_console.print(f"proof of {len(doc['entries'])} entries written to {out}")  # type: ignore[arg-type]
        return
    typer.echo(text)


@ledger_app.command("check-proof")
def ledger_check_proof(
    proof: Annotated[Path, typer.Argument(help="proof JSON from `gridctl ledger proof`")],
    root: Annotated[
        str | None, typer.Option(help="the interval root the coordinator published (hex)")
    ] = None,
) -> None:
    """Check an inclusion proof on its own, without the ledger (exit 1 if it does not hold)."""
    from gridctl.settlement.statement import check_proof

    try:
        doc = json.loads(proof.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise _fail(GridctlError(f"cannot read proof {proof}: {e}")) from None
    ok, message = check_proof(doc, root) if isinstance(doc, dict) else (False, "not a proof")
    if ok:
        console.print(f"proof holds: {message}", soft_wrap=True, highlight=False)
        return
    err_console.print(
        f"[bold red]proof fails:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)


device_app = typer.Typer(
    help="Find, read and simulate Modbus / SunSpec devices.", no_args_is_help=True
)
app.add_typer(device_app, name="device")


def _shown(value: object, missing: str = "n/a") -> str:
    """A value for a table: 12 significant digits, so a meter's Wh counter shows every digit."""
    if value is None:
        return missing
    return f"{value:.12g}" if isinstance(value, float) else str(value)


@device_app.command("profiles")
def device_profiles(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the device profiles gridctl ships."""
    from gridctl.devices.profile import load_profile, profile_names

    try:
        rows = [(n, load_profile(n)) for n in profile_names()]
    except GridctlError as e:
        raise _fail(e) from None
    if as_json:
        out = [
            {"name": n, "vendor": p.vendor, "model": p.model, "kind": p.kind, "source": p.source}
            for n, p in rows
        ]
        console.print_json(json.dumps(out))
        return
    table = Table(title=f"{len(rows)} device profiles")
    for col in ("name", "kind", "vendor", "model", "roles"):
        table.add_column(col)
    for n, p in rows:
        table.add_row(n, p.kind, p.vendor, p.model, str(len(p.registers)))
    console.print(table)


@device_app.command("scan")
def device_scan(
    host: Annotated[str, typer.Argument(help="device IP address or host name")],
    port: Annotated[int, typer.Option(help="Modbus TCP port")] = 502,
    unit: Annotated[int, typer.Option(help="Modbus unit id")] = 1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Find the SunSpec models of a device and show every point with its unit."""
    import asyncio

    from gridctl.devices.commands import scan_device

    try:
        _in_range("--port", port, 1, 65535)
        _in_range("--unit", unit, 0, 255)
        models = asyncio.run(scan_device(host, port, unit))
    except GridctlError as e:
        raise _fail(e) from None
    if as_json:
        out = [
            {"id": m.id, "address": m.address, "length": m.length, "label": m.label,
             "points": {n: {"value": p.value, "units": p.units}
                        for n, p in (m.root.points.items() if m.root else [])}}
            for m in models
        ]  # fmt: skip
        console.print_json(json.dumps(out))
        return
    for m in models:
        table = Table(
            title=f"model {m.id} {m.label} at {m.address} (L={m.length})", title_justify="left"
        )
        for col in ("point", "value", "units"):
            table.add_column(col)
        groups = [("", m.root)] if m.root else []
        while groups:
            prefix, g = groups.pop(0)
            for n, p in g.points.items():
                table.add_row(prefix + n, _shown(p.value), p.units or "")
            for gname, items in g.groups.items():
                groups += [(f"{prefix}{gname}[{i}].", item) for i, item in enumerate(items)]
        console.print(table)


@device_app.command("read")
def device_read(
    host: Annotated[str, typer.Argument(help="device IP address or host name")],
    profile: Annotated[
        str, typer.Option(help="profile name (see `gridctl device profiles`) or YAML file")
    ],
    port: Annotated[
        int | None, typer.Option(help="Modbus TCP port (default: the profile's)")
    ] = None,
    unit: Annotated[
        int | None, typer.Option(help="Modbus unit id (default: the profile's)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read every role of a device through its profile (load convention, role units)."""
    import asyncio

    from gridctl.devices.commands import read_device
    from gridctl.devices.profile import load_profile

    try:
        _in_range("--port", port, 1, 65535)
        _in_range("--unit", unit, 0, 255)
        poll = asyncio.run(read_device(host, load_profile(profile), port, unit))
    except GridctlError as e:
        raise _fail(e) from None
    if poll.error:
        raise _fail(GridctlError(poll.error))
    if as_json:
        console.print_json(
            json.dumps({k: {"value": v.value, "unit": v.unit} for k, v in poll.values.items()})
        )
        return
    table = Table(title=f"{profile} at {host}")
    for col in ("role", "value", "unit"):
        table.add_column(col)
    for role, v in poll.values.items():
        table.add_row(role, _shown(v.value), v.unit)
    console.print(table)


@device_app.command("serve")
def device_serve(
    what: Annotated[
        str,
        typer.Argument(help="sunspec-inverter, sunspec-meter, battery, ev-charger or a profile"),
    ],
    port: Annotated[int, typer.Option(help="TCP port to listen on")] = 5020,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    unit: Annotated[int | None, typer.Option(help="Modbus unit id")] = None,
) -> None:
    """Run a virtual device (a Modbus TCP server that behaves physically) until stopped."""
    import asyncio

    from gridctl.devices.commands import make_virtual, serve_forever

    try:
        _in_range("--port", port, 0, 65535)
        _in_range("--unit", unit, 0, 255)
        device = make_virtual(what, unit, service_clock())

        def ready(bound: int) -> None:
            err_console.print(f"serving {what} on {host}:{bound} unit {device.unit} (Ctrl-C stops)")

        asyncio.run(serve_forever(device, port, host, ready=ready))
    except KeyboardInterrupt:
        pass
    except GridctlError as e:
        raise _fail(e) from None
    except OSError as e:
        raise _fail(GridctlError(f"cannot listen on {host}:{port}: {e.strerror}")) from None


broker_app = typer.Typer(help="Set up the community's MQTT broker.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")


@broker_app.command("config")
def broker_config(
    community: Annotated[
        Path, typer.Argument(help="community YAML (community + households) or a scenario")
    ],
    out: Annotated[Path, typer.Option(help="directory for the broker's files")] = Path("broker"),
    port: Annotated[int, typer.Option(help="MQTT port")] = 1883,
    bind: Annotated[
        str, typer.Option(help="address to listen on ('' = all; beyond loopback: TLS)")
    ] = "127.0.0.1",
    tls_cert: Annotated[Path | None, typer.Option(help="server certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="server private key (PEM)")] = None,
    tls_generate: Annotated[
        str | None,
        typer.Option(
            help="make a community CA and a server certificate for this host name "
            "or IP address (in OUT/tls; kept when run again)"
        ),
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="CA (PEM) to require client certificates")
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="allow plain MQTT beyond loopback (passwords in clear)")
    ] = False,
) -> None:
    """Write mosquitto.conf, the password file, per-household ACLs and credentials.json."""
    from gridctl.transport.broker import (
        Tls,
        load_community,
        unreachable_folder,
        write_broker_config,
    )
    from gridctl.transport.tls import community_tls

    try:
        if (tls_cert is None) != (tls_key is None):
            raise GridctlError("--tls-cert and --tls-key go together")
        if tls_generate is not None and tls_cert is not None:
            raise GridctlError("--tls-generate makes the server certificate: not with --tls-cert")
        if tls_ca is not None and tls_cert is None and tls_generate is None:
            raise GridctlError("--tls-ca needs --tls-cert/--tls-key or --tls-generate")
        for f in (tls_cert, tls_key, tls_ca):
            if f is not None and not f.is_file():
                raise GridctlError(f"no such file: {f}")
        members = load_community(community)
        ca = None
        if tls_generate is not None:
            ca, tls_cert, tls_key = community_tls(out / "tls", members.community, tls_generate)
        tls = None if tls_cert is None or tls_key is None else Tls(tls_cert, tls_key, tls_ca)
        write_broker_config(members, out, port, bind, tls, insecure=insecure)
        shut = unreachable_folder(out)
    except GridctlError as e:
        raise _fail(e) from None
    if shut is not None:
        err_console.print(
            "[yellow]warning:[/] mosquitto drops to its own user, which may not enter "
            f"{escape(str(shut))}: it could not read its files; choose --out elsewhere or let "
            "that user in",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    console.print(
        f"broker for {len(members.households)} households written to {out}/ (passwords in "
        f"{out}/credentials.json, readable by you only); run: mosquitto -c {out}/mosquitto.conf"
        + ("" if ca is None else f"; clients trust {ca} (broker: {{tls: true, cafile: …}})"),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


controller_app = typer.Typer(help="Run a household controller.", no_args_is_help=True)
app.add_typer(controller_app, name="controller")


@controller_app.command("keygen")
def controller_keygen(
    config: Annotated[Path, typer.Argument(help="controller YAML")],
) -> None:
    """Make the meter's Ed25519 key (once, at install) and print what to enrol."""
    from gridctl.controller.config import load_controller_config
    from gridctl.settlement.enrol import main_meter

    def load() -> tuple[Path, str]:
        cfg = load_controller_config(config)
        return cfg.key_file, f"enrol meter {main_meter(cfg.household)} with the coordinator"

    _keygen(load)


def _keygen(load: Callable[[], tuple[Path, str]]) -> None:
    """Make the key file ``load`` names (never overwritten) and print where it is and what to
    enrol (``load`` also says where): ``key_id public_hex``."""
    from gridctl.controller.keys import describe_public_key, generate_key_file

    try:
        key_file, enrol = load()
        public = generate_key_file(key_file)
    except GridctlError as e:
        raise _fail(e) from None
    _say(f"key written to {key_file} (private, mode 0600); {enrol}: {describe_public_key(public)}")


@controller_app.command("roots")
def controller_roots(
    config: Annotated[Path, typer.Argument(help="controller YAML")],
    out: Annotated[Path | None, typer.Option(help="write the JSON here (default: stdout)")] = None,
) -> None:
    """Print (or write) every interval root this household kept, as JSON for an auditor's
    `gridctl ledger verify DB --roots FILE`."""
    from gridctl.controller.config import load_controller_config
    from gridctl.controller.roots import export_roots

    try:
        cfg = load_controller_config(config)
        doc = export_roots(cfg.state_db, cfg.community, cfg.household, cfg.coordinator_key)
        text = doc.model_dump_json(indent=1)
        if out is not None:
            out.write_text(text + "\n", encoding="utf-8")
    except OSError as e:
        raise _fail(GridctlError(f"cannot write {out}: {e.strerror}")) from None
    except GridctlError as e:
        raise _fail(e) from None
    if out is None:
        typer.echo(text)
        return
    first = doc.roots[0].interval if doc.roots else None
    err_console.print(f"{len(doc.roots)} roots (from interval {first}) written to {out}",
                      highlight=False)  # fmt: skip


@controller_app.command("dimming")
def controller_dimming(
    config: Annotated[Path, typer.Argument(help="controller YAML")],
    as_json: Annotated[bool, typer.Option("--json", help="print the windows as JSON")] = False,
) -> None:
    """Print every §14a dimming window this household's controller recorded (start, end,
    source, cap), for the household's statement."""
    import json

    from gridctl.controller.config import load_controller_config
    from gridctl.controller.dimming import describe, read_windows

    try:
        windows = read_windows(load_controller_config(config).state_db)
    except GridctlError as e:
        raise _fail(e) from None
    if as_json:
        typer.echo(json.dumps([w.as_dict() for w in windows], indent=1))
        return
    for w in windows:
        _say(describe(w))
    _say(f"{len(windows)} dimming windows")


@controller_app.command("run")
def controller_run(
    config: Annotated[Path, typer.Argument(help="controller YAML")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every mode change")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="set everything up (key, profiles, state), then exit")
    ] = False,
) -> None:
    """Drive the household's devices, follow the community's plans, sign meter readings."""
    from gridctl.controller.config import load_controller_config
    from gridctl.controller.keys import load_key_file
    from gridctl.controller.loop import Controller

    async def start() -> None:
        cfg = load_controller_config(config)
        controller = Controller(cfg, load_key_file(cfg.key_file), service_clock())
        if check:
            controller.close()
            _say(f"{config} is valid: household {cfg.household}, {len(cfg.devices)} devices")
            return
        await controller.run()

    _run_service(start, verbose)


coordinator_app = typer.Typer(help="Run a community coordinator.", no_args_is_help=True)
app.add_typer(coordinator_app, name="coordinator")


@coordinator_app.command("keygen")
def coordinator_keygen(
    config: Annotated[Path, typer.Argument(help="coordinator YAML")],
) -> None:
    """Make the coordinator's Ed25519 key (once, at install) and print what every controller
    enrols as ``coordinator_key``."""
    from gridctl.coordinator.config import load_coordinator_config

    _keygen(lambda: (load_coordinator_config(config).key_file,
                     "enrol it in every controller's config as coordinator_key"))  # fmt: skip


keys_app = typer.Typer(help="Rotate or revoke household meter keys.", no_args_is_help=True)
coordinator_app.add_typer(keys_app, name="keys")

_AT_HELP = "first interval the change applies to: index or ISO time (default: the current one)"


def _key_change_at(at: str | None) -> int:
    from datetime import UTC, datetime

    from gridctl.core import interval_of

    iv = _interval_arg(at, "--at")
    return interval_of(datetime.now(UTC)) if iv is None else iv


@keys_app.command("rotate")
def coordinator_keys_rotate(
    config: Annotated[Path, typer.Argument(help="coordinator YAML")],
    household: Annotated[str, typer.Argument(help="household id, e.g. h07")],
    public_key: Annotated[str, typer.Option(help="the new meter public key (64 hex)")],
    at: Annotated[str | None, typer.Option(help=_AT_HELP)] = None,
) -> None:
    """Give a household's meter a new key: a signed key event; the old key signs only before."""
    from gridctl.coordinator.config import load_coordinator_config
    from gridctl.coordinator.keys import rotate

    try:
        interval = _key_change_at(at)
        key_id = rotate(load_coordinator_config(config), household, public_key, interval)
    except GridctlError as e:
        raise _fail(e) from None
    console.print(f"household {household}: key {key_id} signs from interval {interval} on",
                  highlight=False)  # fmt: skip


@keys_app.command("revoke")
def coordinator_keys_revoke(
    config: Annotated[Path, typer.Argument(help="coordinator YAML")],
    household: Annotated[str, typer.Argument(help="household id, e.g. h07")],
    at: Annotated[str | None, typer.Option(help=_AT_HELP)] = None,
) -> None:
    """Revoke a household meter's key (lost, compromised): its readings are refused from the
    interval on, until a new key is enrolled by ``keys rotate``."""
    from gridctl.coordinator.config import load_coordinator_config
    from gridctl.coordinator.keys import revoke

    try:
        interval = _key_change_at(at)
        revoked = revoke(load_coordinator_config(config), household, interval)
    except GridctlError as e:
        raise _fail(e) from None
    if not revoked:
        console.print(f"household {household}: no current key to revoke", highlight=False)
        return
    console.print(f"household {household}: key {', '.join(revoked)} revoked from interval "
                  f"{interval} on", highlight=False)  # fmt: skip


@coordinator_app.command("web-login")
def coordinator_web_login(
    config: Annotated[Path, typer.Argument(help="coordinator YAML")],
    household: Annotated[str, typer.Argument(help="household id, e.g. h07")],
) -> None:
    """Set a household's password for the web app (`gridctl web CONFIG`), read from standard
    input (one line) or asked for twice at a terminal; kept only as an argon2id hash."""
    from gridctl.web.logins import set_household_login

    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline(4096).rstrip("\r\n")
    try:
        path = set_household_login(config, household, password)
    except GridctlError as e:
        raise _fail(e) from None
    _say(f"web login of {household} set in {path} (argon2id hash, mode 0600)")


@coordinator_app.command("run")
def coordinator_run(
    config: Annotated[Path, typer.Argument(help="coordinator YAML")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every interval")] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="check config, password and key files, feeder (no writes)"),
    ] = False,
) -> None:
    """Enrol listed households, ingest readings, settle every interval, publish its root."""
    from gridctl.coordinator.assembly import assemble
    from gridctl.coordinator.config import (
        coordinator_from_config,
        coordinator_key,
        load_coordinator_config,
    )

    async def start() -> None:
        cfg = load_coordinator_config(config)
        if check:
            cfg.broker_settings()
            coordinator_key(cfg)
            assemble(cfg)
            _say(f"{config} is valid: community {cfg.community}, {len(cfg.households)} households")
            return
        coordinator, new = coordinator_from_config(cfg, service_clock())
        if new:
            err_console.print(f"enrolled {len(new)} households: {', '.join(new)}", highlight=False)
        if cfg.health_port is not None:
            err_console.print(f"health and metrics on http://127.0.0.1:{cfg.health_port}/")
        await coordinator.run()

    _run_service(start, verbose)


member_app = typer.Typer(help="A household member's vote key.", no_args_is_help=True)
app.add_typer(member_app, name="member")


@member_app.command("keygen")
def member_keygen(
    path: Annotated[Path, typer.Argument(help="where to write the member key (PEM)")],
) -> None:
    """Make a member's Ed25519 vote key (a person's, apart from the meter's; never
    overwritten) and print what the coordinator's config enrols as the household's
    ``member_key``."""
    _keygen(lambda: (path, "enrol it as the household's member_key in the coordinator's config"))


gov_app = typer.Typer(
    help="Propose, vote on, follow and audit the community's governed parameters.",
    no_args_is_help=True,
)
app.add_typer(gov_app, name="gov")


def _when(interval: int) -> str:
    """``interval (YYYY-MM-DD HH:MM UTC)``: an interval index with its start."""
    from gridctl.core import interval_start

    return f"{interval} ({interval_start(interval):%Y-%m-%d %H:%M} UTC)"


def _now_interval() -> int:
    """The interval the services are in: the wall clock's, or the sped-up one of
    ``GRIDCTL_TIME_SCALE`` as the coordinator runs it (GridctlError if that is malformed)."""
    from gridctl.core import interval_at

    return interval_at(service_clock()())


def _proposal_id(text: str) -> int:
    """A proposal id from the command line; GridctlError (one line) if it is not one."""
    if not text.isdigit():
        raise GridctlError(f"proposal {text!r:.20}: a proposal id (a positive integer)")
    return int(text)


def _percent(ppm: int) -> str:
    return f"{ppm / 10_000:.1f} %"


@gov_app.command("propose")
def gov_propose(
    config: Annotated[Path, typer.Argument(help="coordinator YAML")],
    parameter: Annotated[str, typer.Argument(help="governed parameter, e.g. community_per_kwh")],
    value: Annotated[
        str,
        typer.Argument(
            help="a number; a choice (fairness: bus|kwp); a household (remove); "
            "household:member_key_hex (admit)"
        ),
    ],
    rationale: Annotated[str, typer.Option(help="why, for the members (printable text)")],
    window: Annotated[int, typer.Option(help="voting window, intervals")],
    delay: Annotated[int, typer.Option(help="from the close to enactment, intervals")],
    proposer: Annotated[
        str, typer.Option(help="the household proposing (a member), or operator")
    ] = "operator",
    as_json: Annotated[bool, typer.Option("--json", help="print the proposal as JSON")] = False,
) -> None:
    """Submit a proposal to the coordinator's ledger at the current interval: it opens at the
    next, and is refused (exit 2) if its value crosses a bound."""
    from gridctl.coordinator.gov_commands import propose

    try:
        p = propose(config, parameter, value, rationale, proposer, window, delay, _now_interval())
    except GridctlError as e:
        raise _fail(e) from None
    if as_json:
        console.print_json(json.dumps(p._asdict()))
        return
    _say(
        f"proposal {p.proposal}: {p.parameter} = {p.value} ({p.klass}, by {p.proposer}); "
        f"opens {_when(p.opens)}, closes {_when(p.closes)}, enact_at {_when(p.enact_at)} "
        "if it passes"
    )


@gov_app.command("vote")
def gov_vote(
    config: Annotated[Path, typer.Argument(help="controller YAML of the member's household")],
    proposal: Annotated[str, typer.Argument(help="proposal id")],
    choice: Annotated[str, typer.Argument(help="yes, no or abstain")],
    key: Annotated[Path, typer.Option(help="member key file (`gridctl member keygen`)")],
    out: Annotated[
        Path | None, typer.Option(help="write the signed vote (JSON) here instead of sending it")
    ] = None,
) -> None:
    """Sign a vote with the member key and send it (QoS 1) on the household's vote topic; the
    coordinator records it, or refuses it with a reason (unknown or closed proposal, key not
    enrolled, …), when it settles the interval."""
    import asyncio
    import time

    from gridctl.controller.config import load_controller_config
    from gridctl.controller.vote import member_vote, publish_vote
    from gridctl.protocol import encode

    try:
        cfg = load_controller_config(config)
        vote = member_vote(cfg, key, _proposal_id(proposal), choice, time.time_ns() // 1_000_000)
        if out is not None:
            try:
                out.write_bytes(encode(vote) + b"\n")
            except OSError as e:
                raise GridctlError(f"cannot write {out}: {e.strerror}") from None
            _say(f"vote of {vote.household} on proposal {vote.proposal} ({vote.choice}) "
                 f"signed by key {vote.key_id}, written to {out}")  # fmt: skip
            return
        topic = asyncio.run(publish_vote(cfg, vote))
    except GridctlError as e:
        raise _fail(e) from None
    _say(f"vote of {vote.household} on proposal {vote.proposal} ({vote.choice}, seq {vote.seq}) "
         f"signed by key {vote.key_id}, sent on {topic}")  # fmt: skip


def _tally_text(t: Any) -> str:
    return f"yes {t.yes} / no {t.no} / abstain {t.abstain} of {t.total}: {t.outcome}"


@gov_app.command("status")
def gov_status(
    source: Annotated[Path, typer.Argument(help="coordinator YAML or ledger.sqlite file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every proposal with its state at the current interval (as the ledger records it), its
    intervals and, once closed, its tally."""
    from gridctl.coordinator.gov_commands import ledger_of
    from gridctl.governance.report import open_read_only, proposal_views

    try:
        now = _now_interval()
        db = open_read_only(ledger_of(source))
        try:
            views = proposal_views(db, now)
        finally:
            db.close()
    except GridctlError as e:
        raise _fail(e) from None
    if as_json:
        console.print_json(json.dumps([
            v.proposal._asdict() | {"state": v.state,
                                    "tally": None if v.tally is None else v.tally._asdict()}
            for v in views
        ]))  # fmt: skip
        return
    table = Table(title=f"proposals at interval {_when(now)}", title_justify="left")
    for col in ("id", "parameter", "value", "proposer", "state", "opens", "closes", "enact_at",
                "tally"):  # fmt: skip
        table.add_column(col, justify="right" if col == "id" else "left", overflow="fold")
    for v in views:
        p = v.proposal
        table.add_row(str(p.proposal), p.parameter, p.value, p.proposer, v.state,
                      _when(p.opens), _when(p.closes), _when(p.enact_at),
                      "" if v.tally is None else _tally_text(v.tally))  # fmt: skip
    console.print(table)


@gov_app.command("tally")
def gov_tally(
    ledger: Annotated[Path, typer.Argument(help="ledger.sqlite file")],
    proposal: Annotated[str, typer.Argument(help="proposal id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Count a proposal's recorded votes with its weight snapshot (read-only): open, the
    outcome were it closed now; closed, the outcome."""
    from gridctl.governance.report import count_so_far, open_read_only

    try:
        db = open_read_only(ledger)
        try:
            c = count_so_far(db, _proposal_id(proposal), _now_interval())
        finally:
            db.close()
    except GridctlError as e:
        raise _fail(e) from None
    t, p = c.count, c.view.proposal
    if as_json:
        console.print_json(json.dumps({
            "proposal": p.proposal, "state": c.view.state, "yes": t.yes, "no": t.no,
            "abstain": t.abstain, "total": t.total, "turnout": c.turnout, "voters": c.voters,
            "quorum_ppm": c.quorum_ppm, "threshold_ppm": c.threshold_ppm, "outcome": t.outcome,
        }))  # fmt: skip
        return
    so_far = "" if c.view.tally is not None else " so far"
    _say(f"proposal {p.proposal}: {p.parameter} = {p.value}, {c.view.state} "
         f"(closes {_when(p.closes)})")  # fmt: skip
    _say(f"yes {t.yes}  no {t.no}  abstain {t.abstain}  total {t.total}  turnout "
         f"{100 * c.turnout:.1f} % ({c.voters} voters; quorum {_percent(c.quorum_ppm)}, "
         f"threshold {_percent(c.threshold_ppm)} of yes + no)")  # fmt: skip
    _say(f"outcome{so_far}: {t.outcome}")


@gov_app.command("verify")
def gov_verify(
    ledger: Annotated[Path, typer.Argument(help="ledger.sqlite file")],
) -> None:
    """Recompute every proposal's bounds, weight snapshot, vote, tally and enactment from the
    records they rest on (read-only); exit 1 naming the first record that does not follow."""
    from gridctl.governance.report import check_governance

    try:
        check = check_governance(ledger)
    except GridctlError as e:
        raise _fail(e) from None
    if check.problem is None:
        _say(f"ok: {check.proposals} proposals, {check.votes} votes, {check.tallies} tallies, "
             f"{check.enactments} enactments")  # fmt: skip
        return
    err_console.print(f"[bold red]governance broken:[/] {escape(check.problem)}",
                      highlight=False, soft_wrap=True)  # fmt: skip
    raise typer.Exit(1)


opendata_app = typer.Typer(help="Publish the community's open data.", no_args_is_help=True)
app.add_typer(opendata_app, name="opendata")


@opendata_app.command("export")
def opendata_export(
    ledger: Annotated[Path, typer.Argument(help="ledger.sqlite file")],
    out: Annotated[Path, typer.Option("--out", help="folder to write the data package into")],
    k: Annotated[
        int | None,
        typer.Option(help="fewest households a figure may cover (default: the ledger's own)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Write the ledger's per-interval community aggregates as CSV and Parquet with a
    Frictionless datapackage.json and the interval roots that cover them (read-only)."""
    from gridctl.public.opendata import export
    from gridctl.settlement.aggregates import MIN_K

    try:
        _in_range("--k", k, MIN_K, 10_000)
        try:
            summary = export(ledger, out, k)
        except OSError as e:
            raise GridctlError(f"cannot write into {out}: {e.strerror}") from None
    except GridctlError as e:
        raise _fail(e) from None
    if as_json:
        console.print_json(json.dumps(dataclasses.asdict(summary)))
        return
    _say(f"{summary.intervals} intervals to {out}: {summary.checkable} checkable against their "
         f"signed roots, {summary.empty} figures empty (covering fewer than k = {summary.k} "
         "households, or no source)")  # fmt: skip

"""bench/relay: ``relaywizard relay`` against a Postfix relay doing the same job on the same machine.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/relay.py [--messages 2000] [--clients 8] [--rounds 3]

It starts (or reuses) the test lab, a private Secret Service holding the upstream password, then:

- relaywizard: ``relaywizard relay`` listening on 127.0.0.1, pacing off (``--rate 0``), forwarding to the
  lab's submission port with STARTTLS and AUTH as scanner@lab.test (its default 3 upstream sessions);
- Postfix: a second, private Postfix instance (bench/postfix_relay.py) with ``relayhost`` set to the same
  submission port, STARTTLS (certificate verified) and SASL AUTH, Postfix's defaults otherwise.

The load is the same for both (bench/load.py): ``--clients`` SMTP sessions at once, each sending its
share of ``--messages`` messages of 10 KB to bob@lab.test over one session. Measured, per system:

(a) accept rate: messages / seconds from the first MAIL to the last 250;
(b) end-to-end rate: messages / seconds from the first MAIL until all of them are in bob's Maildir.

Each round runs both systems (relaywizard first in even rounds, Postfix first in odd ones) after one
warm-up per system; the table shows the medians and the ratio relaywizard / Postfix. Before the rounds,
the relay's idle resident size is read from /proc, then one 35 MB message is sent through it and the
rise of its peak resident size (VmHWM, reset just before) is reported. A null SMTP sink shows what the
load generator alone can do, so its own limit is known.

Each round's line also shows what explains the rates: how many messages were already delivered when the
last 250 came back, the whole machine's CPU time per message (on a 2-core machine the rates are bound
by it; meaningful only when nothing else runs), and the relay's CPU share (its event loop, and the whole
process with the threads that write the spool). ``--cprofile FILE`` profiles the relay's event loop
during its timed rounds only.

Every process started here is stopped by PID at the end, also after an error or Ctrl-C, and the
messages it delivered are removed from bob's Maildir again (``--keep-mail`` keeps them). Exit code 0
when everything was measured (targets met or not), 1 when a measurement could not be completed
(messages missing, clients failing), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import MaildirWatch, build_message, run_load, subject_prefix  # noqa: E402
from bench.postfix_relay import PostfixRelay  # noqa: E402
from tests.lab.keyring import SecretServiceSession  # noqa: E402
from tests.lab.lab import Lab  # noqa: E402
from tests.lab.mail import ACCOUNTS  # noqa: E402
from tests.lab.process import LabError, free_port, tail, wait_for_port  # noqa: E402

USER = ACCOUNTS[0]  # scanner@lab.test
RECIPIENT = "bob@lab.test"
PROFILE = "bench"
HOST = "127.0.0.1"
TLS_NAME = "smtp.lab.test"  # a DNS name of the lab's certificate (Postfix does not match IP addresses)
MESSAGE_SIZE = 10 * 1024
BIG_SIZE = 35_000_000
IDLE_TARGET = 60_000_000
BIG_RISE_FACTOR = 2
MB = 1_000_000  # sizes are reported in decimal megabytes, as the targets are stated


class BenchError(RuntimeError):
    """A measurement could not be completed."""


# ``--cprofile``: the relay runs in this wrapper, which profiles its event loop (the main thread) only
# between SIGUSR1 and SIGUSR2, i.e. during relaywizard's timed rounds, and writes the statistics then.
PROFILED_RELAY = """
import cProfile, signal, sys
from relaywizard.cli.main import main
profile = cProfile.Profile()
def _on(signum, frame):
    profile.enable()
def _off(signum, frame):
    profile.disable()
    profile.dump_stats(sys.argv[1])
signal.signal(signal.SIGUSR1, _on)
signal.signal(signal.SIGUSR2, _off)
sys.exit(main(sys.argv[2:]))
"""


def machine_cpu() -> float:
    """CPU seconds all cores have been busy since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- relaywizard -----------------------------------------------------------------------------------------


class RelaywizardRelay:
    """``relaywizard relay`` as a subprocess of ours, in its own session (Ctrl-C reaches only us)."""

    def __init__(
        self, work: Path, env: dict[str, str], lab: Lab, *, extra: list[str], cprofile: Path | None
    ) -> None:
        self.work = work
        self.env = dict(env, RELAYWIZARD_HOME=str(work / "home"))
        self.lab = lab
        self.extra = extra
        self.cprofile = cprofile
        self.port = free_port(HOST)
        self.log = work / "relaywizard.log"
        self.process: subprocess.Popen[bytes] | None = None

    def store_secret(self) -> None:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "relaywizard"), "secret", "set", "--profile", PROFILE],
            input=USER.password + "\n",
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(f"relaywizard secret set failed: {result.stderr.strip()}")

    def start(self) -> None:
        if self.cprofile is not None:
            command = [sys.executable, "-c", PROFILED_RELAY, str(self.cprofile.resolve())]
        else:
            command = [str(Path(sys.executable).parent / "relaywizard")]
        command += [
            "relay",
            "--listen",
            f"{HOST}:{self.port}",
            "--allow",
            f"{HOST}/32",
            "--spool",
            str(self.work / "spool"),
            "--upstream",
            f"{self.lab.host}:{self.lab.submission_port}",
            "--ca-file",
            str(self.lab.ca_file),
            "--user",
            USER.login,
            "--profile",
            PROFILE,
            "--rate",
            "0",
            *self.extra,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.work,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while "listening on" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"relaywizard relay did not start:\n{tail(self.log)}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM of the relay process, in bytes."""
        found: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
        return found

    def cpu_seconds(self) -> tuple[float, float]:
        """User + system CPU time so far: of the main thread (the event loop), of the whole process."""

        def seconds(stat: str) -> float:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        return seconds(f"/proc/{self.pid}/task/{self.pid}/stat"), seconds(f"/proc/{self.pid}/stat")

    def profiling(self, on: bool) -> None:
        if self.cprofile is not None and self.process is not None:
            self.process.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current resident size (Linux: "5" to clear_refs); False if not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


# -- measuring -------------------------------------------------------------------------------------------


@dataclass
class Rates:
    """One system's measurement in one round."""

    system: str
    round: int
    messages: int
    seconds_accept: float
    seconds_end_to_end: float
    delivered_while_accepting: int
    """Messages already in the Maildir when the last 250 came back."""
    client_cpu: float
    """The load generator's CPU time as a share of one core, over the accept phase."""
    machine_cpu: float = 0.0
    """CPU seconds of the whole machine (all processes, all cores) per message, first MAIL to the last
    delivery: relay, lab servers and load generator together; only meaningful on a quiet machine."""
    relay_cpu: tuple[float, float] | None = None
    """relaywizard's CPU time as a share of one core, from the first MAIL to the last delivery: its
    event loop (main thread), and the whole process (with the threads that write and fsync the spool)."""

    @property
    def accept(self) -> float:
        return self.messages / self.seconds_accept

    @property
    def end_to_end(self) -> float:
        return self.messages / self.seconds_end_to_end


class Bench:
    def __init__(self, lab: Lab, args: argparse.Namespace, relay: RelaywizardRelay) -> None:
        self.lab = lab
        self.args = args
        self.relay = relay
        self.tag = secrets.token_hex(4)
        self.maildir = lab.mail.maildir(RECIPIENT)

    def messages(self, label: str, count: int, size: int = MESSAGE_SIZE) -> list[bytes]:
        prefix = subject_prefix(self.tag, label)
        return [build_message(size, USER.login, RECIPIENT, f"{prefix}{i:06d}") for i in range(count)]

    def e2e_timeout(self, count: int) -> float:
        return 60.0 + count * 0.1

    def send(self, system: str, port: int, label: str, round_: int = -1) -> Rates:
        """Send the messages of one run through ``port`` and wait until all are in the Maildir."""
        count = self.args.warmup if round_ < 0 else self.args.messages
        batch = self.messages(label, count)
        watch = MaildirWatch(self.maildir, subject_prefix(self.tag, label))
        arrived: list[float] = []
        stop = threading.Event()

        def watching() -> None:
            deadline = time.monotonic() + self.e2e_timeout(count)
            while not stop.is_set() and time.monotonic() < deadline:
                if watch.poll() >= count:
                    arrived.append(time.perf_counter())
                    return
                time.sleep(0.05)

        relay_cpu = self.relay.cpu_seconds() if system == "relaywizard" else (0.0, 0.0)
        if system == "relaywizard" and round_ >= 0:
            self.relay.profiling(True)
        watcher = threading.Thread(target=watching, daemon=True)
        busy = machine_cpu()
        watcher.start()
        try:
            result = run_load(
                HOST, port, batch, clients=self.args.clients, sender=USER.login, recipient=RECIPIENT
            )
            early = len(watch.subjects)
            if result.errors or result.accepted != count:
                raise BenchError(
                    f"{label}: {result.accepted} of {count} accepted; " + "; ".join(result.errors[:3])
                )
            watcher.join(self.e2e_timeout(count) + 5)
            busy = machine_cpu() - busy
        finally:
            stop.set()
            if system == "relaywizard" and round_ >= 0:
                self.relay.profiling(False)
            watcher.join(5)
            if not self.args.keep_mail:
                watch.remove()
        if not arrived:
            raise BenchError(
                f"{label}: only {watch.poll()} of {count} messages reached {RECIPIENT} "
                f"within {self.e2e_timeout(count):.0f} s"
            )
        if watch.duplicates:
            print(f"  note: {label}: {watch.duplicates} message(s) arrived twice", flush=True)
        rates = Rates(
            system,
            round_,
            count,
            result.seconds,
            arrived[0] - result.started,
            early,
            result.cpu_seconds / result.seconds if result.seconds > 0 else 0.0,
            busy / count,
        )
        if system == "relaywizard":
            loop, process = self.relay.cpu_seconds()
            seconds = rates.seconds_end_to_end
            rates.relay_cpu = ((loop - relay_cpu[0]) / seconds, (process - relay_cpu[1]) / seconds)
        return rates

    def rates(self, system: str, port: int, round_: int) -> Rates:
        rates = self.send(system, port, f"{system}-r{round_}", round_)
        relay_cpu = ""
        if rates.relay_cpu is not None:
            relay_cpu = f"   relay CPU: loop {rates.relay_cpu[0]:4.0%}, all {rates.relay_cpu[1]:4.0%}"
        print(
            f"  {time.strftime('%H:%M:%S')} round {round_} {system:<12}"
            f" accept {rates.accept:5.0f}/s ({rates.seconds_accept:5.2f} s)"
            f"   end-to-end {rates.end_to_end:5.0f}/s ({rates.seconds_end_to_end:5.2f} s)"
            f"   delivered by the last 250: {rates.delivered_while_accepting:4d}"
            f"   machine CPU {rates.machine_cpu * 1000:4.1f} ms/message"
            f"   load generator CPU {rates.client_cpu:4.0%}{relay_cpu}",
            flush=True,
        )
        return rates

    def warm_up(self, system: str, port: int) -> None:
        if self.args.warmup > 0:
            self.send(system, port, f"{system}-warmup")

    def big_message(self, relay: RelaywizardRelay) -> tuple[int, int, int, float]:
        """Peak before, peak after (bytes), the message's size, seconds until it was delivered."""
        message = build_message(BIG_SIZE, USER.login, RECIPIENT, f"{subject_prefix(self.tag, 'big')}000000")
        watch = MaildirWatch(self.maildir, subject_prefix(self.tag, "big"))
        if not relay.reset_peak():
            print("  note: cannot reset VmHWM; the rise is measured from the peak so far", flush=True)
        before = relay.memory()["VmHWM"]
        started = time.perf_counter()
        with smtplib.SMTP(HOST, relay.port, timeout=120) as smtp:
            smtp.sendmail(USER.login, [RECIPIENT], message)
        del message
        arrived = watch.wait(1, timeout=180)
        if not self.args.keep_mail:
            watch.remove()
        if arrived is None:
            raise BenchError(f"the 35 MB message did not reach {RECIPIENT} within 180 s")
        time.sleep(0.5)  # the forwarder finishes its bookkeeping after the upstream's 250
        after = relay.memory()["VmHWM"]
        return before, after, BIG_SIZE, arrived - started

    def sink_rate(self) -> tuple[float, float]:
        """The load generator against a null SMTP sink: (messages a second, its CPU share)."""
        port = free_port(HOST)
        sink = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "load.py"), "sink", str(port)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_port(HOST, port, timeout=10)
            batch = self.messages("sink", self.args.messages)
            result = run_load(
                HOST, port, batch, clients=self.args.clients, sender=USER.login, recipient=RECIPIENT
            )
            if result.errors:
                raise BenchError("the null sink: " + "; ".join(result.errors[:3]))
            return result.rate, result.cpu_seconds / result.seconds
        finally:
            sink.terminate()
            try:
                sink.wait(10)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait(5)


# -- report ----------------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(
    args: argparse.Namespace,
    load_before: float,
    sink: tuple[float, float],
    idle: dict[str, int],
    big: tuple[int, int, int, float],
    rounds: list[Rates],
) -> None:
    cores = os.cpu_count() or 0
    print()
    print(
        f"bench/relay on {platform.node()} ({cores} cores, {platform.machine()}, Python "
        f"{platform.python_version()}), {time.strftime('%Y-%m-%d %H:%M')}; load average before: "
        f"{load_before:.2f}"
    )
    print(
        f"{args.messages} messages of {MESSAGE_SIZE // 1024} KB from {args.clients} clients (one session "
        f"each), median of {args.rounds} round(s), each after {args.warmup} warm-up messages"
    )
    print(f"load generator alone, against a null SMTP sink: {sink[0]:.0f} messages/s ({sink[1]:.0%} CPU)")
    print()

    def median(system: str, field: str) -> float:
        return float(statistics.median(float(getattr(r, field)) for r in rounds if r.system == system))

    print(f"{'':<28}{'relaywizard':>14}{'Postfix':>12}{'ratio':>8}  target")
    rows = (
        ("accept rate (250s)", "accept", None),
        ("end-to-end rate (Maildir)", "end_to_end", 1.0),
    )
    for label, field, target in rows:
        ours, theirs = median("relaywizard", field), median("postfix", field)
        ratio = ours / theirs if theirs else float("nan")
        goal = f"ratio ≥ {target:.2f}: {_met(ratio >= target)}" if target is not None else "(none)"
        print(f"{label:<28}{ours:>12.0f}/s{theirs:>10.0f}/s{ratio:>8.2f}  {goal}")
    ours, theirs = median("relaywizard", "machine_cpu") * 1000, median("postfix", "machine_cpu") * 1000
    print(
        f"{'machine CPU per message':<28}{ours:>11.1f}ms{theirs:>9.1f}ms{ours / theirs:>8.2f}  (information)"
    )
    if args.rounds > 1:
        per_round = [
            f"{r_rw.end_to_end / r_pf.end_to_end:.2f}"
            for r_rw in rounds
            if r_rw.system == "relaywizard"
            for r_pf in rounds
            if r_pf.system == "postfix" and r_pf.round == r_rw.round
        ]
        print(f"{'  end-to-end ratio by round':<28}{', '.join(per_round)}")
    print()
    idle_rss = idle["VmRSS"]
    before, after, size, seconds = big
    rise = after - before
    print(
        f"relaywizard idle resident size after start: {idle_rss / MB:.1f} MB "
        f"(target ≤ {IDLE_TARGET / MB:.0f} MB): {_met(idle_rss <= IDLE_TARGET)}"
    )
    print(
        f"one {size / MB:.0f} MB message: peak resident size {before / MB:.1f} → {after / MB:.1f} MB, "
        f"a rise of {rise / MB:.1f} MB = {rise / size:.2f} × its size (target ≤ {BIG_RISE_FACTOR} × = "
        f"{BIG_RISE_FACTOR * size / MB:.0f} MB): {_met(rise <= BIG_RISE_FACTOR * size)}; "
        f"delivered in {seconds:.1f} s"
    )


# -- main ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000, help="messages per system and round")
    parser.add_argument("--clients", type=int, default=8, help="SMTP sessions at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both systems (median reported)")
    parser.add_argument("--warmup", type=int, default=80, help="messages sent before the first round")
    parser.add_argument(
        "--relay-option",
        action="append",
        default=[],
        metavar="OPT",
        help="extra option for relaywizard relay, e.g. --relay-option=--connections=8 (repeatable)",
    )
    parser.add_argument(
        "--cprofile",
        type=Path,
        help="profile the relay's event loop during its timed rounds (cProfile statistics to this file)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, spool, queue)")
    parser.add_argument(
        "--keep-mail", action="store_true", help=f"keep the delivered messages in {RECIPIENT}'s Maildir"
    )
    args = parser.parse_args()
    if args.messages < args.clients or args.clients < 1 or args.rounds < 1:
        parser.error("need --clients ≥ 1, --messages ≥ --clients and --rounds ≥ 1")

    signal.signal(signal.SIGTERM, _terminate)
    load_before = os.getloadavg()[0]
    lab = Lab.acquire()
    work = Path(tempfile.mkdtemp(prefix="relaywizard-bench-", dir="/var/tmp"))
    work.chmod(0o755)  # Postfix's daemons (user postfix) must reach their folders below it
    keyring: SecretServiceSession | None = None
    relay: RelaywizardRelay | None = None
    postfix: PostfixRelay | None = None
    try:
        keyring = SecretServiceSession(work / "keyring").start()
        relay = RelaywizardRelay(work, keyring.env, lab, extra=args.relay_option, cprofile=args.cprofile)
        bench = Bench(lab, args, relay)
        print(f"bench/relay: work folder {work}, run tag {bench.tag}", flush=True)
        relay.store_secret()
        relay.start()
        time.sleep(2.0)
        idle = relay.memory()
        print(f"  relaywizard relay pid {relay.pid} on port {relay.port}: idle {idle['VmRSS'] / MB:.1f} MB")
        big = bench.big_message(relay)
        print(f"  35 MB message: peak {big[0] / MB:.1f} → {big[1] / MB:.1f} MB", flush=True)

        postfix = PostfixRelay(
            work / "postfix",
            port=free_port(HOST),
            relayhost=(lab.host, lab.submission_port),
            ca_file=lab.ca_file,
            tls_name=TLS_NAME,
            login=USER.login,
            password=USER.password,
        )
        postfix.start()
        print(f"  Postfix relay master pid {postfix.master_pid()} on port {postfix.port}", flush=True)

        sink = bench.sink_rate()
        print(f"  load generator against a null sink: {sink[0]:.0f}/s", flush=True)

        ports = {"relaywizard": relay.port, "postfix": postfix.port}
        for system, port in ports.items():
            bench.warm_up(system, port)
        rounds: list[Rates] = []
        for round_ in range(args.rounds):
            order = ["relaywizard", "postfix"] if round_ % 2 == 0 else ["postfix", "relaywizard"]
            for system in order:
                try:
                    rounds.append(bench.rates(system, ports[system], round_))
                except BenchError:
                    if system == "postfix":
                        print(f"Postfix log:\n{postfix.log_tail()}", file=sys.stderr)
                    else:
                        print(f"relaywizard log:\n{tail(relay.log)}", file=sys.stderr)
                    raise
        report(args, load_before, sink, idle, big, rounds)
        return 0
    except (BenchError, LabError) as exc:
        print(f"bench/relay: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench/relay: interrupted; stopping what it started", file=sys.stderr)
        return 130
    finally:
        for stop in (
            relay.stop if relay else None,
            postfix.stop if postfix else None,
            keyring.stop if keyring else None,
        ):
            if stop is not None:
                try:
                    stop()
                except Exception as exc:
                    print(f"bench/relay: while stopping: {exc!r}", file=sys.stderr)
        lab.release()
        if args.keep:
            print(f"bench/relay: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

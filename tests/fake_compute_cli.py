"""The fake Compute server standalone (``python -m tests.fake_compute``), with named scenarios
for demos and benches."""

from __future__ import annotations

import argparse
import threading

from tests.fake_compute import DEFAULT_PROJECT, FakeCompute

# ---------------------------------------------------------------------- scenarios

SCENARIOS = {
    "default": "every zone has capacity; 8 GPUs of quota per region, 16 globally",
    "failover": "us-central1-a stocked out, us-central1-b (WITH_DETAILS, hints us-west1-b), us-east1 quota exceeded",
    "no-global-quota": "GPUS_ALL_REGIONS = 0 (a new project)",
    "stockout": "every zone stocked out",
    "slow": "operations take 3 s; 100 ms per request",
}


def apply_scenario(fake: FakeCompute, name: str) -> None:
    """Configure a named scenario (for the standalone server and demos)."""
    if name == "default":
        return
    if name == "failover":
        fake.add_fault("us-central1-a", "stockout")
        fake.add_fault("us-central1-b", "stockout_details", zones_available=["us-west1-b"])
        fake.add_fault("us-east1-c", "quota_region")
        fake.add_fault("us-east1-d", "quota_region")
    elif name == "no-global-quota":
        fake.set_global_quota("GPUS_ALL_REGIONS", 0)
    elif name == "stockout":
        for z in fake.world:
            fake.add_fault(z, "stockout")
    elif name == "slow":
        fake.op_seconds = 3.0
        fake.latency = 0.1
    else:
        raise SystemExit(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fake_compute", description="A fake Compute Engine v1 REST server for tests and demos.")
    ap.add_argument("--port", type=int, default=8089)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--project", default=DEFAULT_PROJECT)
    ap.add_argument("--scenario", default="default", help="; ".join(f"{k}: {v}" for k, v in SCENARIOS.items()))
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    ap.add_argument("--op-seconds", type=float, default=0.5, help="how long operations take")
    ap.add_argument("--nat-ip", help="external IP every VM gets (e.g. 127.0.0.1 for a local sshd)")
    args = ap.parse_args(argv)
    fake = FakeCompute(args.project, latency=args.latency, op_seconds=args.op_seconds, nat_ip=args.nat_ip)
    apply_scenario(fake, args.scenario)
    fake.start(args.port, args.host)
    print(f"fake Compute on {fake.url} (project {args.project}, scenario {args.scenario})", flush=True)
    print(f"export GPUWIZARD_COMPUTE_ENDPOINT={fake.url} GOOGLE_CLOUD_PROJECT={args.project}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

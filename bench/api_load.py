"""Load on loopback against the real stack: PostgreSQL + Redis + uvicorn (N processes).

    flock /tmp/buckle-bench.lock .venv/bin/python bench/api_load.py [--workers 2] [--seconds 10]

Starts throwaway PostgreSQL and Redis (app/devservers.py), migrates, creates an organization,
key, file and job, then measures with a small asyncio HTTP/1.1 keep-alive client (cheap enough
that the 2-core machine spends its time in the server, not the load generator):

1. `GET /v1/fine_tuning/jobs/{id}` — target ≥ 1000 req/s, p99 < 50 ms, zero errors;
2. `POST /v1/fine_tuning/jobs` (each commits a job + event and enqueues a Celery chain on
   Redis) — target ≥ 100 jobs/s.

Results are printed and written to docs/bench/api_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.devservers import free_port, start_postgres, start_redis


def _request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _connection(port: int, make_request, deadline: float, latencies: list[float],
                      errors: list[int], ok_status: int = 200) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            req = make_request()
            start = time.perf_counter()
            writer.write(req)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - start)
            if status != ok_status:
                errors.append(status)
    finally:
        writer.close()


def _cpu_seconds(root_pid: int) -> float:
    """utime + stime of a process and its children (the uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if root_pid in (pid, ppid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def _load(port: int, make_request, seconds: float, connections: int,
                server_pid: int | None = None) -> dict:
    cpu0 = _cpu_seconds(server_pid) if server_pid else 0.0
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_connection(port, make_request, deadline, latencies, errors)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - start
    cpu = (_cpu_seconds(server_pid) - cpu0) if server_pid else None
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {"requests": len(latencies), "seconds": round(elapsed, 2),
            "rps": round(len(latencies) / elapsed, 1), "errors": len(errors),
            "error_statuses": sorted(set(errors)), "connections": connections,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "max_ms": round(latencies[-1] * 1000, 2),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
            # what the API processes spent per request: with the whole machine (os.cpu_count()
            # cores) for the API, capacity ≈ cores / this — independent of other load
            "server_cpu_ms_per_request": round(cpu * 1000 / len(latencies), 3) if cpu else None,
            "load_average_1m": os.getloadavg()[0]}


def _start_py_spy(root_pid: int, out: Path, seconds: float) -> list[subprocess.Popen]:
    """One `py-spy record` per uvicorn worker (children of root_pid), for the GET phase."""
    if shutil.which("py-spy") is None:
        raise SystemExit("--py-spy needs the py-spy command: pip install -e '.[bench]'")
    out.mkdir(parents=True, exist_ok=True)
    children = Path(f"/proc/{root_pid}/task/{root_pid}/children").read_text().split()
    children = children or [str(root_pid)]  # --workers 1 serves from the main process
    return [subprocess.Popen(["py-spy", "record", "--pid", pid, "--duration",
                              str(int(seconds)), "--format", "raw", "--rate", "200",
                              "--output", str(out / f"get_{pid}.txt")],
                             stdout=subprocess.DEVNULL)
            for pid in children]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "api_load.json"))
    ap.add_argument("--py-spy", metavar="DIR", help="profile the API processes during the GET "
                    "phase with py-spy (collapsed stacks per process into DIR); slows them down")
    args = ap.parse_args()

    pg, redis = start_postgres(), start_redis()
    api = None
    data_dir = Path(pg.data_dir.parent) / "service"
    try:
        env = dict(os.environ, BUCKLE_DATA_DIR=str(data_dir),
                   BUCKLE_DATABASE_URL=pg.create_database("buckle"),
                   BUCKLE_BROKER_URL=redis.url(0), BUCKLE_ENVIRONMENT="production",
                   # one organization sends everything: the per-org rate limit (a 429 path,
                   # tested in tests/service/test_api_quotas.py) would cap what is measured
                   BUCKLE_RATE_LIMIT="")
        os.environ.update({k: env[k] for k in ("BUCKLE_DATA_DIR", "BUCKLE_DATABASE_URL",
                                               "BUCKLE_BROKER_URL", "BUCKLE_ENVIRONMENT",
                                               "BUCKLE_RATE_LIMIT")})
        from app.migrate import upgrade

        upgrade()
        from app.core.db import new_session
        from app.services.orgs import create_key, create_org

        with new_session() as session:
            org = create_org(session, "bench")
            key = create_key(session, org.id, "bench").key
        port = free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
             str(port), "--workers", str(args.workers), "--no-access-log", "--log-level",
             "warning"], cwd=ROOT, env=env)
        import httpx

        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {key}"}
        line = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                        {"role": "assistant", "content": "hello"}]})
        file_id = httpx.post(base + "/v1/files", headers=headers, data={"purpose": "fine-tune"},
                             files={"file": ("t.jsonl", (line + "\n").encode())}).json()["id"]
        body = json.dumps({"model": "smollm2-135m-instruct", "training_file": file_id}).encode()
        job_id = httpx.post(base + "/v1/fine_tuning/jobs",
                            headers={**headers, "Content-Type": "application/json"},
                            content=body).json()["id"]
        get_req = _request("GET", f"/v1/fine_tuning/jobs/{job_id}", key)
        post_req = _request("POST", "/v1/fine_tuning/jobs", key, body)
        asyncio.run(_load(port, lambda: get_req, 2, args.connections))  # warm-up
        spies = _start_py_spy(api.pid, Path(args.py_spy), args.seconds) if args.py_spy else []
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                       f"{platform.python_version()}",
            "uvicorn_workers": args.workers,
            "get_job": asyncio.run(_load(port, lambda: get_req, args.seconds, args.connections,
                                         api.pid)),
            "create_job": asyncio.run(_load(port, lambda: post_req, args.seconds / 2,
                                            args.connections, api.pid)),
        }
        for spy in spies:
            spy.wait(60)
        g, c = results["get_job"], results["create_job"]
        results["targets_met"] = {
            "get_job": g["rps"] >= 1000 and g["p99_ms"] < 50 and g["errors"] == 0,
            "create_job": c["rps"] >= 100 and c["errors"] == 0}
        print(json.dumps(results, indent=2))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if api is not None:
            api.terminate()
            api.wait(20)
        redis.stop()
        pg.stop()


if __name__ == "__main__":
    main()

"""Runs several processes on this machine, prefixes their output with their names, and waits.

Shared by the local launchers (tuner chief/workers, multi-worker training). Standard library only.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Sequence, Tuple


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _relay(name: str, stream) -> None:
  for line in stream:
    sys.stdout.write(f"[{name}] {line}")
    sys.stdout.flush()


def run_all(processes: Sequence[Tuple[str, List[str], Dict[str, str]]]) -> Dict[str, int]:
  """Starts each (name, command, extra environment), waits for all; returns their exit codes.

  When one exits with an error the others are stopped (a search or a collective would wait
  for it forever); Ctrl-C stops them all.
  """
  running = []
  for name, command, env in processes:
    proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    thread = threading.Thread(target=_relay, args=(name, proc.stdout), daemon=True)
    thread.start()
    running.append((name, proc, thread))
  try:
    while any(proc.poll() is None for _, proc, _ in running):
      if any(proc.poll() not in (None, 0) for _, proc, _ in running):
        _stop(running)
      time.sleep(0.2)
  except KeyboardInterrupt:
    _stop(running)
  codes = {}
  for name, proc, thread in running:
    codes[name] = proc.wait()
    thread.join(timeout=5)
  return codes


def _stop(running) -> None:
  for _, proc, _ in running:
    if proc.poll() is None:
      proc.terminate()


def report(codes: Dict[str, int]) -> int:
  """Prints each process's exit status; 0 when all succeeded, else 1."""
  for name, code in codes.items():
    print(f"{name}: exit status {code}", flush=True)
  return 0 if all(code == 0 for code in codes.values()) else 1

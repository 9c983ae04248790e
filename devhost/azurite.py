"""Azurite (Table, Queue, Blob) from node_modules, on free ports, stopped by PID."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devhost.procs import free_port, port_open, spawn, stop, wait_until

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
POINT_LOOKUP = Path(__file__).resolve().parent / "azurite_point_lookup.js"
ACCOUNT = "devstoreaccount1"
# The well-known Azurite development key (public, documented by Microsoft).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def connection_string(blob_port: int, queue_port: int, table_port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue_port}/{ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{ACCOUNT};"
    )


@dataclass
class Azurite:
    """One Azurite process. `location=None` keeps data in memory."""

    location: Path | None = None
    log_path: Path | None = None
    blob_port: int = field(default_factory=free_port)
    queue_port: int = field(default_factory=free_port)
    table_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    def start(self, timeout: float = 30.0) -> "Azurite":
        if not AZURITE_BIN.exists():
            raise RuntimeError("Azurite is not installed: run `npm ci` (make does this for you)")
        # The preload gives point operations Table Storage's cost (see the file); answers are unchanged.
        args = ["node", "--require", str(POINT_LOOKUP), str(AZURITE_BIN),
                "--silent", "--disableTelemetry", "--skipApiVersionCheck",
                "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
                "--blobPort", str(self.blob_port), "--queuePort", str(self.queue_port),
                "--tablePort", str(self.table_port)]
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        self.proc = spawn(args, log_path=self.log_path)
        wait_until(lambda: all(port_open(p) for p in (self.blob_port, self.queue_port, self.table_port)),
                   timeout, "Azurite", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        """Stop and start on the same ports (data survives only with a `location`)."""
        self.stop()
        self.start()

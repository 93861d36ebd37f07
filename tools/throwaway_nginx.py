"""Debian's nginx with docker-compose.yml's configuration (deploy/nginx/nginx.conf), in front of
a server of the tests: only the addresses (and, where asked, other lines) changed."""

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.gunicorn_server import http_server_on_a_free_port

NGINX_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "nginx.conf"


@contextmanager
def throwaway_nginx(
    upstream_port: int,
    config_file: Path = NGINX_CONF,
    stream_port: int | None = None,
    **replacements: str,
) -> Iterator[str]:
    """nginx proxying to 127.0.0.1:`upstream_port`, and GET /events/stream to
    `stream_port` (by default the same), with `config_file` (by default, the shipped one);
    yields its base URL. `replacements` swap whole lines of the configuration, e.g. a
    shorter timeout."""
    root = Path(tempfile.mkdtemp(prefix="throwaway-nginx-"))

    def start_on(port: int) -> subprocess.Popen:
        config = config_file.read_text()
        for old, new in {
            "set $api http://api:8000;": f"set $api http://127.0.0.1:{upstream_port};",
            "listen 8080;": f"listen 127.0.0.1:{port};",
            "set $stream http://stream:8000;": "set $stream "
            f"http://127.0.0.1:{stream_port or upstream_port};",
            **replacements,
        }.items():
            assert old in config, old
            config = config.replace(old, new)
        (root / "nginx.conf").write_text(config)
        return subprocess.Popen(
            ["nginx", "-c", root / "nginx.conf", "-e", root / "error.log",
             "-g", f"daemon off; pid {root / 'nginx.pid'};"],
            stdout=subprocess.DEVNULL, stderr=(root / "stderr.log").open("w"),
        )  # fmt: skip

    try:
        with http_server_on_a_free_port(start_on) as url:
            yield url
    finally:
        shutil.rmtree(root, ignore_errors=True)

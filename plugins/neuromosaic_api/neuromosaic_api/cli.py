"""``neuromosaic-api``: serve the API and dashboard, issue a token, write the OpenAPI document.

    neuromosaic-api [--host 127.0.0.1] [--port 8765] [--url URL] [--runs DIR]   serve
                    [--allow-setting KEY] [--set KEY=VALUE] [--max-trials N] ...   what clients may set
    neuromosaic-api token --scope read|write [--ttl 12h] [--subject NAME]        print a token
    neuromosaic-api openapi [-o FILE]                                            print/write the document

Every mistake (no secret, a bad flag value, a database that cannot be opened) is one line on
stderr and exit status 2, never a traceback. FastAPI and uvicorn are imported only to serve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neuromosaic_api.auth import SCOPES, issue_token, parse_ttl
from neuromosaic_api.policy import ClientPolicy
from neuromosaic_api.settings import SECRET_ENV, ApiSettings, secret_from_env
from neuromosaic_core.errors import NeuromosaicError

#: Where the committed OpenAPI document lives (the test compares the served one with it).
OPENAPI_FILE = Path(__file__).resolve().parents[1] / "openapi.json"


def build_parser() -> argparse.ArgumentParser:
    from neuromosaic_core.results import default_url

    parser = argparse.ArgumentParser(
        prog="neuromosaic-api",
        description=f"Serve Neuromosaic's REST API and dashboard. Tokens are signed with ${SECRET_ENV}.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--url", default=None, help=f"results database URL (default: $NEUROMOSAIC_STORAGE_URL or {default_url()})")
    parser.add_argument("--runs", default="runs", help="root of the run directories (default ./runs, as `neuromosaic` writes)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second per client (default 20; 0: no limit)")
    parser.add_argument("--burst", type=int, default=60, help="requests a client may send at once (default 60)")
    parser.add_argument("--max-body", type=int, default=64 * 1024, help="largest request body in bytes (default 65536)")
    parser.add_argument("--audit-log", default=None, help="audit log file (default <runs>/api-audit.log)")
    policy = parser.add_argument_group("what clients may set when they create an experiment (docs/plugins/api.md)")
    policy.add_argument("--allow-setting", action="append", default=[], metavar="KEY",
                        help="also let clients set KEY (exact, or a pattern such as 'codegen.*'; repeatable); "
                             "storage.* and hydra.* never")
    policy.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="fixed",
                        help="a setting of every search, after the client's, which clients may not set "
                             "(e.g. --set codegen=ollama; repeatable)")
    policy.add_argument("--max-trials", type=int, default=200, help="most search.trials a client may ask for (default 200)")
    policy.add_argument("--max-epochs", type=int, default=100, help="most training.epochs (default 100)")
    policy.add_argument("--max-params", type=int, default=10_000_000, help="largest constraints.max_params (default 10000000)")
    policy.add_argument("--max-trial-seconds", type=float, default=600.0,
                        help="largest runner.timeout, the time per trial (default 600)")
    policy.add_argument("--max-workers", type=int, default=None, help="most runner.workers (default: this machine's CPUs)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    token = sub.add_parser("token", help="print a signed token")
    token.add_argument("--scope", choices=SCOPES, required=True, help="read: queries only; write: also create/start/stop")
    token.add_argument("--ttl", default="12h", help="validity: seconds or 30m, 12h, 7d (default 12h)")
    token.add_argument("--subject", default="cli", help="who the token is for (rate limits and the audit log use it)")
    doc = sub.add_parser("openapi", help="print the OpenAPI document, or write it with -o")
    doc.add_argument("-o", "--output", default=None, help=f"file to write (the committed copy: {OPENAPI_FILE})")
    return parser


def openapi_document() -> dict:
    """The document FastAPI generates for this version (no database, no secret needed)."""
    import tempfile

    from neuromosaic_api.app import create_app
    from neuromosaic_core.testing.memory import InMemoryResultsDB

    with tempfile.TemporaryDirectory() as runs:
        app = create_app(ApiSettings(secret="x" * 32, runs=Path(runs)), db=InMemoryResultsDB())
        document = app.openapi()
        app.state.server.close()
    return document


def _die(message: str) -> None:
    print(f"neuromosaic-api: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "openapi":
            text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
            if args.output:
                Path(args.output).write_text(text)
                print(f"wrote {args.output}")
            else:
                sys.stdout.write(text)
            return
        secret = secret_from_env()
        if args.command == "token":
            print(issue_token(secret, args.scope, parse_ttl(args.ttl), subject=args.subject))
            return
        _serve(args, secret)
    except (NeuromosaicError, ValueError, OSError) as exc:
        _die(str(exc))
    except Exception as exc:  # a broken installation, say: still one line, not a traceback
        _die(f"unexpected {type(exc).__name__}: {exc}")


def _serve(args: argparse.Namespace, secret: str) -> None:
    from neuromosaic_core.results import default_url

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: expected 1-65535")
    if args.max_body < 1 or args.burst < 1 or args.rate < 0:
        raise ValueError("--max-body and --burst must be at least 1, --rate at least 0")
    policy = ClientPolicy(allowed=args.allow_setting, fixed=args.fixed, max_trials=args.max_trials, max_epochs=args.max_epochs,
                          max_params=args.max_params, max_trial_seconds=args.max_trial_seconds, max_workers=args.max_workers)
    settings = ApiSettings(secret=secret, url=args.url or default_url(), runs=Path(args.runs), rate=args.rate,
                           burst=args.burst, max_body_bytes=args.max_body,
                           audit_log=Path(args.audit_log) if args.audit_log else None, policy=policy)
    import uvicorn

    from neuromosaic_api.app import create_app

    app = create_app(settings)
    print(f"neuromosaic-api: serving {settings.url} on http://{args.host}:{args.port}/ "
          f"(audit log {settings.audit_path}; clients may set trials <= {policy.max_trials}, epochs <= {policy.max_epochs}, "
          f"time per trial <= {policy.max_trial_seconds:g} s)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False,
                proxy_headers=False)

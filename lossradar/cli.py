"""`lossradar COMMAND ...`: one entry point that hands each command to the part that owns it.

Commands are imported lazily, so `lossradar serve` never imports torch and `lossradar mix` never
imports the server.
"""

from __future__ import annotations

import importlib
import sys

#: command -> (module with ``main(argv) -> int``, help); argv starts with the command.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("server.cli", "run the metrics server (uvicorn)"),
    "db": ("server.cli", "database migrations: `lossradar db upgrade`"),
    "token": ("server.cli", "API tokens: `lossradar token create --scope write`"),
    "alerts": ("server.alerts.cli", "alert rules and notifiers: `lossradar alerts test-send`"),
    "mix": ("trainer_hook.mix.cli", "data-mix planning: `lossradar mix plan PLAN`"),
    "demo": ("lossradar.demo.cli", "a real blended training run watched end to end"),
}


def _usage() -> str:
    lines = ["usage: lossradar COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    command = args[0]
    if command not in COMMANDS:
        print(f"lossradar: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(args))


if __name__ == "__main__":
    sys.exit(main())

"""``python -m thor_cli``: the ``thor`` command (so ``accelerate launch -m thor_cli sft ...`` works)."""

from thor_cli.cli.app import main

if __name__ == "__main__":
    main()

# thor's recipes. `just --list` shows them.

# the main job end to end (CPU)
demo:
    ./shell/demo.sh

# the whole test suite (pass pytest args, e.g. just test -m "not slow")
test *ARGS:
    ./shell/test.sh {{ARGS}}

# lint and type-check
lint:
    ./shell/setup.sh
    .venv/bin/ruff check src tests bench
    .venv/bin/mypy src

# speed benchmarks (each prints a table of ratios against a baseline in the same run)
bench:
    ./shell/setup.sh
    for b in bench/*_bench.py; do .venv/bin/python "$b"; done

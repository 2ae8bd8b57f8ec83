"""``python -m prisme_keys``."""

from prisme_keys.cli import run

if __name__ == "__main__":
    run()

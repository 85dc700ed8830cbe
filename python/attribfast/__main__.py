"""`python -m attribfast`: the same command line as the `attribfast` script."""

from .cli import run

if __name__ == "__main__":
    run()

"""`python -m shipyard` runs the command line (the same as the `shipyard` script)."""

from shipyard.cli import main

if __name__ == "__main__":
    main(prog_name="shipyard")

"""`python -m gradlint`: the `gradlint` command, for environments whose scripts folder is not on PATH."""

from gradlint.entry import main

if __name__ == "__main__":  # pragma: no cover - run as a program
    main(prog_name="gradlint")

"""`python -m gradprobe` runs the command line."""

from gradprobe.cli import main

if __name__ == "__main__":
    main()

"""``python -m fake_manta``."""

from fake_manta.cli import main

if __name__ == "__main__":
    main()

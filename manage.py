#!/usr/bin/env python
import os
import sys


def main() -> None:
    from grantry.devenv import load_dev_env

    load_dev_env()  # only where `make run` wrote var/dev.env
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grantry.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

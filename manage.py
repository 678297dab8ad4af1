#!/usr/bin/env python
import os
import sys


def main() -> None:
    from grantry.devenv import load_dev_env

    load_dev_env()  # only where `make run` wrote var/dev.env
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grantry.settings")
    # Management commands get the long database timeouts; runserver serves web requests.
    serves_web = len(sys.argv) > 1 and sys.argv[1] == "runserver"
    os.environ.setdefault("GRANTRY_DB_TIMEOUTS", "web" if serves_web else "background")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

import sys

from grantry_cli.main import main

sys.exit(main())

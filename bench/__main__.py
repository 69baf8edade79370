"""`python -m bench`: the issue 2 benchmark (GET /api/v1/auth/me vs a bare Tornado hello)."""
import sys

from bench.auth_me import main

sys.exit(main())

"""`python -m eqx_impl ...` is the `weighted-elbo` command line (see `eqx_impl.cli`)."""

import sys

from eqx_impl.cli import main

sys.exit(main())

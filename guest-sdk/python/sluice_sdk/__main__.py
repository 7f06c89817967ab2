"""`python -m sluice_sdk build MODULE:CLASS -o OUT.wasm`; see `sluice_sdk.build`."""

import sys

from .build import main

sys.exit(main())

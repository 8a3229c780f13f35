import sys

from dca_pipeline.cli import main

sys.exit(main())

import sys

from speechssl.data.synth.cli import main

sys.exit(main())

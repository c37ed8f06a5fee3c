import sys

from speechssl.data.corpora import main

sys.exit(main())

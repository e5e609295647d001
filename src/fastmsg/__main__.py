import sys

from fastmsg._cli import main

sys.exit(main())

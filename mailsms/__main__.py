import sys

from mailsms.cli import main

sys.exit(main())

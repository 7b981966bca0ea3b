"""``python3 -m cudnnconv`` runs the demo (see cudnnconv/demo.py)."""
import sys

from cudnnconv.demo import main

sys.exit(main())

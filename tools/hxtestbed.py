#!/usr/bin/python3
"""Entry point of the testbed (the code: the package tools/hxtestbed/, its API in
hxtestbed/__init__.py): `python3 tools/hxtestbed.py up|down|status|...`, like tools/testbed.
The subreapers run as `hxtestbed.py _node ...`: down() finds them by that command line."""
import os
import sys

# the package tools/hxtestbed/ (a package wins over this file of the same name)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hxtestbed  # noqa: E402

if __name__ == '__main__':
    sys.exit(hxtestbed.main())

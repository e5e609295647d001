"""The main() of every target: atheris with libFuzzer's options from the command line."""

import os
import shlex
import sys

import atheris


def main(test_one_input, script):
    # libFuzzer runs argv[0] through the shell for -merge and -fork: name this interpreter too,
    # or it runs the script with whatever `python` the PATH finds, or fails to.
    argv = [f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(script))}", *sys.argv[1:]]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()

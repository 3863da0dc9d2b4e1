"""`python -m dispatcher …` is the same as the `yujing` command."""

from dispatcher.cli import main

main()

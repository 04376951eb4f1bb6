"""`python -m lowsim` runs the `lowsim` command line."""
from lowsim.cli import main

main()

"""`python -m transfer` runs the command line (torchrun: `torchrun --nproc_per_node=N -m transfer ...`)."""
from transfer.cli import main

main()

"""The data: MNIST and Fashion-MNIST from their IDX files (images.py), Graves et al.'s Copy and
Repeat Copy (copy_tasks.py). The lowest floor: it imports nothing of the project."""

"""The image data sets (images.py: MNIST and Fashion-MNIST from their IDX files) and the copy
tasks (copy_tasks.py: Graves et al.'s Copy and Repeat Copy, drawn). The lowest floor: it imports nothing of the project (Keras only inside the function that downloads)."""

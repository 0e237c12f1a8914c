"""The image data sets (images.py: MNIST and Fashion-MNIST from their IDX files). The lowest
floor: it imports nothing of the project (Keras only inside the function that downloads)."""

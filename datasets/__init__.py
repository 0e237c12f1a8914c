"""The data sets the image experiments train on, read from the files they come in.

    from datasets import images
    (x_train, y_train), (x_test, y_test) = images.load("fashion-mnist")

This folder is the lowest floor of the house: it imports nothing of the project (numpy and the
standard library only; Keras only inside the function that downloads), so any script, trainer or
process may import it.
"""

"""vaelab: train variational autoencoders on MNIST-style images and see what the latent size does."""

__version__ = "0.1.0"

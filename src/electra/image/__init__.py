"""Image track: the founding description's generator/discriminator on 28×28 images, plus VAE and VAE-GAN."""

"""electra: generator–discriminator learning.

Image track: the founding description's GAN (``L_G = Σ −log D(G(z))``, ``L_D = Σ −log D(x) − Σ log(1 − D(G(z)))``),
the VAE and the VAE-GAN on 28×28 images.  Text track: ELECTRA replaced-token-detection pre-training, GLUE
fine-tuning, fill-mask and replaced-token detection.  Both run through one core (``electra.core``).
"""

from electra.errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]

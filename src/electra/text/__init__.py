"""Text track: ELECTRA replaced-token-detection pre-training (Clark et al., ICLR 2020) on the shared core."""

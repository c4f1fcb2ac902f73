"""Serving: a trained model folder exported for use outside bam-tf."""

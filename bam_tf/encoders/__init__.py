"""Encoders: the families bam-tf fine-tunes (a data table), and loading a
pretrained or debug encoder with its tokenizer."""

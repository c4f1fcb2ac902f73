"""The data layer: TSV/TFDS -> examples -> features -> tf.data."""
